"""ONNX Runtime latency of BERT exports on one batch (default 32 × 64), side by side:
`bench_ort.py NAME=DIR [NAME=DIR ...]`. Each model runs on 2 intra-op threads (1 inter-op),
3 warm-up runs, then 20 rounds that run the models in turn; the last line is one JSON object."""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (arguments.batch, arguments.length)
    ids = rng.integers(1000, 30000, size=shape).astype(np.int64)
    ids[:, 0] = 101
    feeds = {"input_ids": ids, "attention_mask": np.ones(shape, np.int64),
             "token_type_ids": np.zeros(shape, np.int64)}
    sessions = {}
    for entry in arguments.models:
        name, directory = entry.split("=", 1)
        path = os.path.join(directory, "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = arguments.threads
        options.inter_op_num_threads = 1
        sessions[name] = (path, ort.InferenceSession(path, options,
                                                     providers=["CPUExecutionProvider"]))
        for _ in range(3):
            sessions[name][1].run(["logits"], feeds)
    # Interleaved rounds: a busy machine slows every model alike. CPU time (all threads of this
    # process) is reported beside wall time because it barely moves when other processes
    # compete for the cores.
    wall = {name: [] for name in sessions}
    cpu = {name: [] for name in sessions}
    for _ in range(arguments.runs):
        for name, (_, session) in sessions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            session.run(["logits"], feeds)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    results = {}
    for name, (path, _) in sessions.items():
        results[name] = {"median_ms": round(1000 * statistics.median(wall[name]), 1),
                         "min_ms": round(1000 * min(wall[name]), 1),
                         "cpu_median_ms": round(1000 * statistics.median(cpu[name]), 1),
                         "bytes": os.path.getsize(path)}
        r = results[name]
        print(f"{name}: wall median {r['median_ms']} ms (min {r['min_ms']}), CPU time median "
              f"{r['cpu_median_ms']} ms per {shape[0]}×{shape[1]} batch; model.onnx "
              f"{r['bytes'] / 1e6:.1f} MB")
    names = list(results)
    if len(names) == 2:
        a, b = names
        results["speedup"] = round(results[a]["median_ms"] / results[b]["median_ms"], 2)
        results["speedup_min"] = round(results[a]["min_ms"] / results[b]["min_ms"], 2)
        results["speedup_cpu"] = round(results[a]["cpu_median_ms"] / results[b]["cpu_median_ms"], 2)
        print(f"speedup of {b} over {a}: {results['speedup']}× (wall median), "
              f"{results['speedup_min']}× (wall min), {results['speedup_cpu']}× (CPU time)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
