"""Benchmarks of decaylora (training-step speed and memory, compressed inference).

Run ``python -m benchmarks.train_step`` and ``python -m benchmarks.inference`` (add ``--quick``
for a short run). Results go to ``benchmarks/out/NAME.json``; see ``docs/performance.md``.
"""
