"""ONNX Runtime latency of BERT exports on one batch (default 32 × 64), side by side:
`bench_ort.py NAME=DIR [NAME=DIR ...]`. Each model runs on 2 intra-op threads (1 inter-op),
warm-up 3 runs, then the median and the spread of 20 runs; the last line is one JSON object."""
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
    results = {}
    for entry in arguments.models:
        name, directory = entry.split("=", 1)
        path = os.path.join(directory, "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = arguments.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(3):
            session.run(["logits"], feeds)
        times = []
        for _ in range(arguments.runs):
            start = time.perf_counter()
            session.run(["logits"], feeds)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results[name] = {"median_ms": round(1000 * median, 1),
                         "min_ms": round(1000 * min(times), 1),
                         "max_ms": round(1000 * max(times), 1),
                         "bytes": os.path.getsize(path)}
        print(f"{name}: median {1000 * median:.1f} ms (min {1000 * min(times):.1f}, max "
              f"{1000 * max(times):.1f}) per {shape[0]}×{shape[1]} batch, "
              f"{os.path.getsize(path) / 1e6:.1f} MB model.onnx")
    names = list(results)
    if len(names) == 2:
        results["speedup"] = round(results[names[0]]["median_ms"] / results[names[1]]["median_ms"], 2)
        print(f"speedup {names[1]} over {names[0]}: {results['speedup']}×")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
