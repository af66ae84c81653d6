#!/usr/bin/env python3
"""How far two `surgeon apply` runs of the same manifest ended apart (for example one process
and `mpirun -np 2`): the trained tensors taken as one vector, ||a - b|| / ||b||, the worst tensor,
and the largest difference of a step's loss. Standard library only.

    python3 Scripts/distributed-difference.py checkpoints/RUN-A checkpoints/RUN-B
"""
import array
import json
import math
import struct
import sys


def tensors(directory):
    data = open(f"{directory}/model.safetensors", "rb").read()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    trained = json.loads(header["__metadata__"]["surgeon.trainable"])
    result = {}
    for name in trained:
        entry = header[name]
        if entry["dtype"] != "F32":
            continue
        start, end = entry["data_offsets"]
        values = array.array("f")
        values.frombytes(body[start:end])
        result[name] = values
    return result


def losses(directory):
    with open(f"{directory}/metrics.jsonl") as lines:
        records = [json.loads(line) for line in lines]
    return [r["loss"] for r in records if r.get("type") == "step"]


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
difference = norm = 0.0
worst = (0.0, "")
for name, x in a.items():
    y = b[name]
    d = sum((p - q) ** 2 for p, q in zip(x, y))
    n = sum(q * q for q in y)
    difference += d
    norm += n
    if n > 0 and math.sqrt(d / n) > worst[0]:
        worst = (math.sqrt(d / n), name)
print(f"trained tensors: {len(a)}, relative difference as one vector: {math.sqrt(difference / norm):.3g}")
print(f"worst single tensor: {worst[1]} {worst[0]:.3g}")
la, lb = losses(sys.argv[1]), losses(sys.argv[2])
print(f"steps: {len(la)} and {len(lb)}, largest loss difference: {max(abs(p - q) for p, q in zip(la, lb)):.3g}")
