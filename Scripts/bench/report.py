"""Summarises Scripts/bench.sh's rounds: per-round ratios of the two sides (measured next to each
other), their medians, a table, and as the last line one JSON object."""

import json
import pathlib
import statistics
import sys

TARGETS = {
    "train_step_vs_pytorch_lora": ("<=", 0.70),
    "train_step_after_decay_vs_pytorch_lora": ("<=", 0.35),
    "peak_rss_vs_pytorch": ("<=", 0.50),
    "compressed_inference_speedup": (">=", 3.0),
    "inference_vs_pytorch": ("<=", 0.80),
    "gemm_efficiency": (">=", 0.70),
    "vgg_train_step_vs_pytorch": ("<=", 0.80),
    "inference_vs_onnxruntime": ("<=", 1.00),
    "compressed_vs_onnxruntime_dense": (">=", 2.50),
    "bert_base_train_step_vs_pytorch_lora": ("<=", 0.80),
}


def load(directory, name):
    lines = (directory / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main():
    directory = pathlib.Path(sys.argv[1])
    swift_train = load(directory, "surgeon-bert-train")
    torch_train = load(directory, "pytorch-bert-train")
    swift_eval = load(directory, "surgeon-bert-eval")
    torch_eval = load(directory, "pytorch-bert-eval")
    swift_vgg = load(directory, "surgeon-vgg-train")
    torch_vgg = load(directory, "pytorch-vgg-train")
    onnx_eval = load(directory, "onnxruntime-bert-eval")
    swift_base = load(directory, "surgeon-bert-base-train")
    torch_base = load(directory, "pytorch-bert-base-train")

    def ratio(pairs):
        return statistics.median(a / b for a, b in pairs)

    def med(rows, key):
        return statistics.median(row[key] for row in rows)

    keys = {
        "train_step_vs_pytorch_lora": ratio(
            (s["decay_seconds"], t["seconds"]) for s, t in zip(swift_train, torch_train)
        ),
        "train_step_after_decay_vs_pytorch_lora": ratio(
            (s["after_seconds"], t["seconds"]) for s, t in zip(swift_train, torch_train)
        ),
        "peak_rss_vs_pytorch": ratio(
            (s["peak_rss_mb"], t["peak_rss_mb"]) for s, t in zip(swift_train, torch_train)
        ),
        "compressed_inference_speedup": med(swift_eval, "compressed_inference_speedup"),
        "inference_vs_pytorch": ratio(
            (s["dense_seconds"], t["seconds"]) for s, t in zip(swift_eval, torch_eval)
        ),
        "gemm_efficiency": med(swift_train, "gemm_efficiency"),
        "vgg_train_step_vs_pytorch": ratio(
            (s["seconds"], t["seconds"]) for s, t in zip(swift_vgg, torch_vgg)
        ),
        # surgeon's dense forward over ONNX Runtime's (lower is better) ...
        "inference_vs_onnxruntime": ratio(
            (s["dense_seconds"], o["seconds"]) for s, o in zip(swift_eval, onnx_eval)
        ),
        # ... and ONNX Runtime's dense over surgeon's compressed (a speedup).
        "compressed_vs_onnxruntime_dense": ratio(
            (o["seconds"], s["compressed_seconds"]) for s, o in zip(swift_eval, onnx_eval)
        ),
        "bert_base_train_step_vs_pytorch_lora": ratio(
            (s["decay_seconds"], t["seconds"]) for s, t in zip(swift_base, torch_base)
        ),
    }
    # The GEMM floors: each ratio as it would be if everything outside surgeon's GEMMs took no
    # time (its own GEMMs replayed through `cblas_sgemm` alone, in the same round). A target
    # below its floor cannot be met by work around the GEMMs; it needs fewer FLOPs or a faster
    # sgemm than this machine's OpenBLAS.
    floors = {
        "train_step_vs_pytorch_lora": ratio(
            (s["sgemm_seconds"], t["seconds"]) for s, t in zip(swift_train, torch_train)
        ),
        "inference_vs_pytorch": ratio(
            (s["dense_sgemm_seconds"], t["seconds"]) for s, t in zip(swift_eval, torch_eval)
        ),
        "inference_vs_onnxruntime": ratio(
            (s["dense_sgemm_seconds"], o["seconds"]) for s, o in zip(swift_eval, onnx_eval)
        ),
    }
    if all("sgemm_seconds" in s for s in swift_base):
        floors["bert_base_train_step_vs_pytorch_lora"] = ratio(
            (s["sgemm_seconds"], t["seconds"]) for s, t in zip(swift_base, torch_base)
        )
    raw = {
        "surgeon_train_step_decay_seconds": med(swift_train, "decay_seconds"),
        "surgeon_train_step_after_decay_seconds": med(swift_train, "after_seconds"),
        "pytorch_peft_train_step_seconds": med(torch_train, "seconds"),
        "surgeon_train_peak_rss_mb": med(swift_train, "peak_rss_mb"),
        "pytorch_train_peak_rss_mb": med(torch_train, "peak_rss_mb"),
        "surgeon_dense_eval_seconds": med(swift_eval, "dense_seconds"),
        "surgeon_compressed_eval_seconds": med(swift_eval, "compressed_seconds"),
        "pytorch_eval_seconds": med(torch_eval, "seconds"),
        "train_step_gflop": med(swift_train, "step_gflop"),
        "train_step_gflops": med(swift_train, "step_gflops"),
        "sgemm_gflops_same_shapes": med(swift_train, "sgemm_gflops"),
        "surgeon_vgg_step_seconds": med(swift_vgg, "seconds"),
        "pytorch_vgg_step_seconds": med(torch_vgg, "seconds"),
        "surgeon_vgg_peak_rss_mb": med(swift_vgg, "peak_rss_mb"),
        "pytorch_vgg_peak_rss_mb": med(torch_vgg, "peak_rss_mb"),
        "onnxruntime_eval_seconds": med(onnx_eval, "seconds"),
        "bert_base_train_step_after_decay_vs_pytorch_lora": ratio(
            (s["after_seconds"], t["seconds"]) for s, t in zip(swift_base, torch_base)
        ),
        "surgeon_bert_base_train_step_decay_seconds": med(swift_base, "decay_seconds"),
        "surgeon_bert_base_train_step_after_decay_seconds": med(swift_base, "after_seconds"),
        "pytorch_peft_bert_base_train_step_seconds": med(torch_base, "seconds"),
        "bert_base_batch": swift_base[0]["batch"],
        "bert_base_length": swift_base[0]["length"],
        "blas_core": {
            "surgeon": swift_train[0]["blas_core"]
            + (
                f" (OpenBLAS picked {swift_train[0]['blas_core_corrected_from']}; corrected)"
                if "blas_core_corrected_from" in swift_train[0]
                else ""
            ),
            "pytorch": torch_train[0]["blas_core"],
            "onnxruntime": onnx_eval[0]["blas_core"],
        },
        "gemm_floors": {key: round(value, 4) for key, value in floors.items()},
        "dense_eval_gflop": med(swift_eval, "dense_gemm_gflop"),
        "dense_sgemm_gflops": med(swift_eval, "dense_sgemm_gflops"),
        "cpu_model": swift_train[0]["cpu_model"],
        "cpu_features": swift_train[0]["cpu_features"],
        "onnxruntime": onnx_eval[0]["onnxruntime"],
        "rounds": len(swift_train),
        "threads": swift_train[0]["threads"],
        "torch": torch_train[0]["torch"],
    }
    print()
    print(f"{'key':42} {'measured':>9}   target        {'GEMM floor':>10}")
    for key, value in keys.items():
        sign, target = TARGETS[key]
        met = value <= target if sign == "<=" else value >= target
        floor = f"{floors[key]:10.3f}" if key in floors else ""
        print(f"{key:42} {value:9.3f}   {sign} {target:.2f}  {'met   ' if met else 'MISSED'} {floor}")
    print("  (GEMM floor: the ratio if everything outside surgeon's GEMMs took no time)")
    print()
    cores = {row["blas_core"] for rows in (swift_train, swift_eval, swift_vgg, swift_base) for row in rows}
    if len(cores) > 1:
        print(f"  warning: surgeon's runs used different BLAS cores: {sorted(cores)}")
    for key, value in raw.items():
        print(f"  {key:42} {value}")
    print(json.dumps({**{k: round(v, 4) for k, v in keys.items()}, **raw}, sort_keys=False))


if __name__ == "__main__":
    main()
