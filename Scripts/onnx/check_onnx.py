"""Reference side of Scripts/check-onnx.sh: tiny data and models, inputs, and the check of an
ONNX export with onnx.checker and ONNX Runtime against `surgeon forward`'s outputs."""
import json
import struct
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def make_data(work):
    """A tiny text CSV and a tiny IDX image set (28×28, 10 classes) for the apply runs."""
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    letters = "bcdefghijklmnopqrstuvwxyz"
    for i in range(96):
        words = [letters[rng.integers(len(letters))] for _ in range(rng.integers(3, 8))]
        if i % 2 == 0:
            words.insert(int(rng.integers(len(words))), "a")
        rows.append(f"\"{' '.join(words)}\",{'yes' if i % 2 == 0 else 'no'}")
    open(f"{work}/tiny.csv", "w").write("\n".join(rows) + "\n")
    count = 80
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 256, size=(count, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):  # a class-dependent bright patch, so training moves
        images[i, 2 * label:2 * label + 6, 4:10] = 255
    with open(f"{work}/images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, count, 28, 28) + images.tobytes())
    with open(f"{work}/labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x00000801, count) + labels.tobytes())


def make_vgg(directory, average_pool, classes, seed):
    """A random VGG with batch norm, 3 input channels and an adaptive average pool, in
    surgeon's VGG checkpoint format (torchvision names)."""
    import os
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    cfg = [8, "M", 16, "M"]
    tensors = {}
    index, channels = 0, 3
    for entry in cfg:
        if entry == "M":
            index += 1
            continue
        tensors[f"features.{index}.weight"] = rng.normal(0, 0.3, (entry, channels, 3, 3))
        tensors[f"features.{index}.bias"] = rng.normal(0, 0.1, (entry,))
        norm = index + 1
        tensors[f"features.{norm}.weight"] = rng.uniform(0.5, 1.5, (entry,))
        tensors[f"features.{norm}.bias"] = rng.normal(0, 0.1, (entry,))
        tensors[f"features.{norm}.running_mean"] = rng.normal(0, 0.2, (entry,))
        tensors[f"features.{norm}.running_var"] = rng.uniform(0.5, 2.0, (entry,))
        index += 3
        channels = entry
    features = channels * average_pool * average_pool
    tensors["classifier.0.weight"] = rng.normal(0, 0.1, (20, features))
    tensors["classifier.0.bias"] = rng.normal(0, 0.1, (20,))
    tensors["classifier.3.weight"] = rng.normal(0, 0.1, (classes, 20))
    tensors["classifier.3.bias"] = rng.normal(0, 0.1, (classes,))
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    for name in [k for k in tensors if k.endswith("running_var")]:
        tensors[name.replace("running_var", "num_batches_tracked")] = np.array(7, dtype=np.int64)
    save_file(tensors, f"{directory}/model.safetensors")
    config = {"model_type": "vgg", "cfg": cfg, "batch_norm": True, "in_channels": 3,
              "image_size": 28, "num_classes": classes, "classifier_hidden": [20],
              "avgpool": average_pool, "dropout": 0.5}
    json.dump(config, open(f"{directory}/config.json", "w"), indent=1)


def set_decay(checkpoint, decay):
    """Moves every adapter of a rewritten checkpoint to decay `decay` (the `surgeon.decay`
    metadata the loader reads): a model caught mid-way through its schedule."""
    path = f"{checkpoint}/model.safetensors"
    from safetensors import safe_open
    with safe_open(path, "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    factors = json.loads(metadata["surgeon.decay"])
    metadata["surgeon.decay"] = json.dumps({k: float(decay) for k in factors})
    save_file(tensors, path, metadata=metadata)


def scale(checkpoint, suffix, factor):
    """Multiplies the tensors whose names end with `suffix`: the tiny fixture's FFN
    pre-activations are near 0, where gelu, gelu_new and each other's formulas agree; scaled
    up, the activation's exact shape shows in the outputs."""
    path = f"{checkpoint}/model.safetensors"
    from safetensors import safe_open
    with safe_open(path, "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name in tensors:
        if name.endswith(suffix):
            tensors[name] = (tensors[name] * np.float32(factor)).astype(tensors[name].dtype)
    save_file(tensors, path, metadata=metadata)


def make_inputs(work):
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 64, size=(3, 7)).astype(np.int64)
    ids[:, 0] = 2
    mask = np.ones_like(ids)
    ids[1, 5:] = 0
    mask[1, 5:] = 0
    types = np.zeros_like(ids)
    types[2, 4:] = 1
    save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
              f"{work}/bert-inputs.safetensors")
    save_file({"pixel_values": rng.normal(0, 1, (3, 1, 28, 28)).astype(np.float32)},
              f"{work}/vgg1-inputs.safetensors")
    save_file({"pixel_values": rng.normal(0, 1, (2, 3, 28, 28)).astype(np.float32)},
              f"{work}/vgg3-inputs.safetensors")


def check(name, directory, inputs_path, reference_path, tolerance=1e-4):
    import onnx
    import onnxruntime as ort
    model_path = f"{directory}/model.onnx"
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    description = json.load(open(f"{directory}/surgeon.json"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    inputs = load_file(inputs_path)
    feeds = {i.name: inputs[i.name].astype(np.int64 if i.type == "tensor(int64)" else np.float32)
             for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feeds)))
    reference = load_file(reference_path)
    worst = 0.0
    report = []
    for output in names:
        expected = reference[output]
        got = outputs[output]
        if got.shape != expected.shape:
            print(f"FAIL {name}: {output} has shape {got.shape}, surgeon's {expected.shape}")
            return False
        difference = float(np.max(np.abs(got - expected)))
        worst = max(worst, difference)
        report.append(f"{output} max |Δ| {difference:.2e}")
    # Logits that do not vary between examples (dead ReLUs, say) would make the match trivial.
    spread = float(np.ptp(reference["logits"], axis=0).max())
    if spread == 0:
        print(f"FAIL {name}: surgeon's logits are the same for every example; the check proves nothing")
        return False
    report.append(f"logits spread {spread:.2e}")
    nodes = len(model.graph.node)
    operators = sorted({n.op_type for n in model.graph.node})
    # Small logits (a fresh head) would pass an absolute tolerance whatever the graph computes:
    # the difference must also be small against how much the logits vary between examples.
    logits_difference = float(np.max(np.abs(outputs["logits"] - reference["logits"])))
    passed = worst <= tolerance and logits_difference <= 1e-2 * spread
    status = "ok" if passed else "FAIL"
    print(f"{status} {name} ({description['form']} {description['family']}, {nodes} nodes: "
          f"{' '.join(operators)}): onnx.checker passes; ONNX Runtime {'; '.join(report)}"
          f" (tolerance {tolerance:g}, and 1% of the spread)")
    return passed


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "data":
        make_data(sys.argv[2])
    elif command == "vgg":
        make_vgg(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif command == "decay":
        set_decay(sys.argv[2], float(sys.argv[3]))
    elif command == "scale":
        scale(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif command == "inputs":
        make_inputs(sys.argv[2])
    elif command == "check":
        sys.exit(0 if check(*sys.argv[2:6]) else 1)
    else:
        sys.exit(f"unknown command {command}")
