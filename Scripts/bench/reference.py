"""The PyTorch side of Scripts/bench.sh: the same workloads as surgeon-bench, one per process.

  bert-train  all-MiniLM-L6-v2 + a 2-class head, HF PEFT LoraConfig r 16 / alpha 16 on the 36
              attention/FFN Linears, classifier and pooler trained (modules_to_save), AdamW,
              gradient clipping at 1; batch 32 x 64 random token ids, training mode (dropout on).
              With --config bert-base: a BERT-base-shaped model (hidden 768, 12 layers, 12 heads,
              FFN 3072) with random weights and the same LoRA set-up on its 72 Linears.
  bert-eval   the plain model's evaluation forward pass (torch.inference_mode) on the same batch.
  onnx-eval   the same dense forward pass on ONNX Runtime (CPU provider, all graph optimisations),
              on the model exported from PyTorch with torch.onnx.export (cached at --onnx).
  vgg-train   the vision flow's VGG (VGG11-bn cfg at 1/4 width, 1x28x28) with the same adapters
              as manifests/vgg-fashion-mnist.yaml: lowrank conv adapters (kxk conv in->r, 1x1
              r->out) r 8 on every conv but the first, r 16 on the hidden Linears, each with a bias
              C and per-output moment-matched noise redrawn every step, frozen path d*W + N at
              d = 0.4375 (progress 0.5), batch norm and head trained; batch 64 random images.

Prints one JSON object: median step seconds over --repeats steps after --warmup, and the peak
RSS of this process.
"""

import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def cpu_model():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(step, warmup, repeats):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def time_training(loss, trainable, optimizer, args):
    """Times training steps as surgeon makes them: backward, global-norm clipping at 1, AdamW."""

    def step():
        loss().backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, times = timed(step, args.warmup, args.repeats)
    return {
        "seconds": seconds,
        "times": times,
        "trainable_parameters": sum(p.numel() for p in trainable),
    }


def bert_batch(batch, length, vocabulary):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 21000, (batch, length), generator=generator)
    ids[:, 0] = 101
    ids = ids.clamp(max=vocabulary - 1)
    mask = torch.ones(batch, length, dtype=torch.long)
    labels = torch.arange(batch) % 2
    return ids, mask, labels


def bert_train(args):
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    if args.config == "bert-base":
        torch.manual_seed(0)
        shape = BertConfig(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            num_labels=2,
        )
        model = BertForSequenceClassification(shape)
    else:
        model = BertForSequenceClassification.from_pretrained(args.checkpoint, num_labels=2)
    layers = model.config.num_hidden_layers
    config = LoraConfig(
        r=16,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=r".*encoder\.layer\.\d+\..*(query|key|value|dense)$",
        modules_to_save=["classifier", "pooler"],
    )
    model = get_peft_model(model, config)
    wrapped = sum(1 for name, _ in model.named_modules() if name.endswith("lora_A"))
    assert wrapped == 6 * layers, f"expected {6 * layers} wrapped Linears, got {wrapped}"
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
    ids, mask, labels = bert_batch(args.batch, args.length, model.config.vocab_size)
    result = time_training(
        lambda: model(input_ids=ids, attention_mask=mask, labels=labels).loss,
        trainable,
        optimizer,
        args,
    )
    return {**result, "wrapped_linears": wrapped}


def bert_eval(args):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(args.checkpoint, num_labels=2)
    model.eval()
    ids, mask, _ = bert_batch(args.batch, args.length, model.config.vocab_size)

    def forward():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)

    seconds, times = timed(forward, args.warmup, args.repeats)
    return {"seconds": seconds, "times": times}


def onnx_eval(args):
    import os

    import onnxruntime
    from transformers import BertForSequenceClassification

    if not os.path.exists(args.onnx):
        model = BertForSequenceClassification.from_pretrained(args.checkpoint, num_labels=2)
        model.eval()
        ids, mask, _ = bert_batch(2, 16, model.config.vocab_size)
        torch.onnx.export(
            model,
            (ids, mask),
            args.onnx,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
            },
            opset_version=17,
            dynamo=False,
        )
        # The exported graph computes what PyTorch computes (else the timing means nothing).
        check = onnxruntime.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
        ids, mask, _ = bert_batch(4, args.length, model.config.vocab_size)
        with torch.inference_mode():
            expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
        (logits,) = check.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        if abs(logits - expected).max() > 1e-3:
            os.remove(args.onnx)
            raise SystemExit("the ONNX export's logits differ from PyTorch's")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(
        args.onnx, options, providers=["CPUExecutionProvider"]
    )
    ids, mask, _ = bert_batch(args.batch, args.length, 30522)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}

    def forward():
        session.run(None, feed)

    seconds, times = timed(forward, args.warmup, args.repeats)
    return {
        "seconds": seconds,
        "times": times,
        "onnxruntime": onnxruntime.__version__,
        "blas_core": "MLAS (ONNX Runtime's own kernels, chosen by CPU features)",
    }


class DecayingAdapter(nn.Module):
    """d*(W x + b) + N x + s * B A x + C with N ~ Normal((1-d) m, (1-d^2) var) per output row,
    redrawn every step; W, b frozen; A, B, C trained. `conv` picks the conv form."""

    def __init__(self, layer, rank, alpha, decay):
        super().__init__()
        self.layer = layer
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.scale = alpha / rank
        weight = layer.weight.detach()
        rows = weight.reshape(weight.shape[0], -1)
        self.register_buffer("shift", ((1 - decay) * rows.mean(dim=1)))
        self.register_buffer(
            "spread", ((1 - decay * decay) * rows.var(dim=1, unbiased=False)).sqrt()
        )
        out_features = weight.shape[0]
        if isinstance(layer, nn.Conv2d):
            self.down = nn.Conv2d(
                layer.in_channels,
                rank,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                bias=False,
            )
            self.up = nn.Conv2d(rank, out_features, 1, bias=False)
        else:
            self.down = nn.Linear(layer.in_features, rank, bias=False)
            self.up = nn.Linear(rank, out_features, bias=False)
        nn.init.zeros_(self.up.weight)
        self.c = nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        weight = self.layer.weight
        view = (-1,) + (1,) * (weight.dim() - 1)
        noise = torch.randn_like(weight) * self.spread.view(view) + self.shift.view(view)
        effective = self.decay * weight + noise
        bias = self.decay * self.layer.bias if self.layer.bias is not None else None
        if isinstance(self.layer, nn.Conv2d):
            frozen = F.conv2d(
                x, effective, bias, stride=self.layer.stride, padding=self.layer.padding
            )
            c = self.c.view(1, -1, 1, 1)
        else:
            frozen = F.linear(x, effective, bias)
            c = self.c
        return frozen + self.scale * self.up(self.down(x)) + c


def vgg(cfg, in_channels, hidden, classes):
    layers = []
    channels = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [
                nn.Conv2d(channels, item, 3, padding=1),
                nn.BatchNorm2d(item),
                nn.ReLU(inplace=True),
            ]
            channels = item
    features = nn.Sequential(*layers)
    classifier = []
    width = channels
    for size in hidden:
        classifier += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(0.5)]
        width = size
    classifier.append(nn.Linear(width, classes))
    return nn.Sequential(features, nn.Flatten(), nn.Sequential(*classifier))


def vgg_train(args):
    torch.manual_seed(0)
    model = vgg([16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128], 1, [256, 256], 10)
    decay = 1 - (0.5 - 0.05) / (0.85 - 0.05)
    features, _, classifier = model
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    for index in convs[1:]:
        features[index] = DecayingAdapter(features[index], 8, 8, decay)
    linears = [i for i, m in enumerate(classifier) if isinstance(m, nn.Linear)]
    for index in linears[:-1]:
        classifier[index] = DecayingAdapter(classifier[index], 16, 16, decay)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, DecayingAdapter)):
            for name, parameter in module.named_parameters(recurse=False):
                parameter.requires_grad_(True)
        if isinstance(module, DecayingAdapter):
            for parameter in list(module.down.parameters()) + list(module.up.parameters()):
                parameter.requires_grad_(True)
    for parameter in classifier[linears[-1]].parameters():
        parameter.requires_grad_(True)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=generator)
    labels = torch.arange(args.batch) % 10
    return time_training(
        lambda: F.cross_entropy(model(images), labels), trainable, optimizer, args
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "workload", choices=["bert-train", "bert-eval", "onnx-eval", "vgg-train"]
    )
    parser.add_argument("--checkpoint", default="checkpoints/all-minilm-l6-v2")
    parser.add_argument("--config", choices=["checkpoint", "bert-base"], default="checkpoint")
    parser.add_argument("--onnx", default=".build/bench-minilm.onnx")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 64 if args.workload == "vgg-train" else 32
    torch.set_num_threads(args.threads)
    run = {
        "bert-train": bert_train,
        "bert-eval": bert_eval,
        "onnx-eval": onnx_eval,
        "vgg-train": vgg_train,
    }
    result = run[args.workload](args)
    result.setdefault(
        "blas_core",
        "torch CPU capability " + torch.backends.cpu.get_cpu_capability()
        + " (MKL/oneDNN, chosen by CPU features)",
    )
    result.update(
        {
            "cpu_model": cpu_model(),
            "workload": args.workload,
            "side": "onnxruntime" if args.workload == "onnx-eval" else "pytorch",
            "peak_rss_mb": peak_rss_mb(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "batch": args.batch,
            "repeats": args.repeats,
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
