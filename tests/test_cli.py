"""CLI smoke tests on the tiny config (random tiny BERT, a few hundred Rotten Tomatoes snippets)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from decaylora.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
RUN_FILES = ["config.yaml", "metrics.jsonl", "results.json", "report.md", "summary.txt",
             "schedule.png", "noise.png", "bias.png", "curves.png"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["run", "--config", TINY, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_run_writes_every_artifact(tiny_run: Path) -> None:
    for name in RUN_FILES:
        f = tiny_run / name
        assert f.is_file() and f.stat().st_size > 0, name
    for png in ("schedule.png", "noise.png", "bias.png", "curves.png"):
        assert (tiny_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tiny_run / "export" / "model.safetensors").is_file()
    assert (tiny_run / "export" / "decaylora.json").is_file()
    assert (tiny_run / "adapter" / "adapter.safetensors").is_file()
    assert not (tiny_run / "checkpoint").exists()  # removed once the run finished


def test_run_metrics_and_results(tiny_run: Path) -> None:
    records = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    trains = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in evals] == [4, 8, 12]          # eval_every 4, steps 12
    assert [r["step"] for r in trains] == list(range(2, 13, 2))  # log_every 2
    for r in evals:
        for key in ("progress", "d", "noise_on", "val_acc", "val_acc_exported", "val_loss",
                    "c_norm", "ba_norm", "weight_stats"):
            assert key in r, key
        assert 0.0 <= r["val_acc"] <= 1.0 and 0.0 <= r["val_acc_exported"] <= 1.0
    # d follows the default schedule (linear, 0.05 -> 0.85) at the logged progress
    for r in records:
        p = r["progress"]
        expected = 1.0 if p < 0.05 else 0.0 if p >= 0.85 else 1 - (p - 0.05) / 0.8
        assert r["d"] == pytest.approx(expected, abs=1e-6)
    assert evals[-1]["d"] == 0.0
    # at d = 0 the model IS the W-free model: both accuracies agree
    assert evals[-1]["val_acc"] == evals[-1]["val_acc_exported"]
    res = json.loads((tiny_run / "results.json").read_text())
    assert res["w_free"] and res["export"]["matches"]
    assert res["export"]["reloaded_test_acc"] == res["test_acc"] == res["test_acc_wfree_view"]
    assert res["params"]["deployed"] == res["export"]["params"]
    assert res["params"]["wrapped_layers"] == 12  # 2 layers x 6 Linears
    report = (tiny_run / "report.md").read_text()
    assert "test accuracy" in report and "parameters deployed" in report


def test_export_command_reloads_and_matches(tiny_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "exp"
    assert main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    a = load_file(out / "model.safetensors")
    b = load_file(tiny_run / "export" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any("base_layer" in k for k in a)


def test_plot_command(tiny_run: Path, capsys) -> None:
    (tiny_run / "curves.png").unlink()
    assert main(["plot", str(tiny_run)]) == 0
    assert (tiny_run / "curves.png").is_file()


def test_summary_command(capsys, tmp_path: Path) -> None:
    js = tmp_path / "s.json"
    assert main(["summary", "--model", "tiny-bert", "--rank", "4", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "DecayLinear" in out
    totals = json.loads(js.read_text())["totals"]
    # tiny BERT: hidden 32, intermediate 64; 2 layers x (4 x 32x32 + 32x64 + 64x32) Linears
    per_layer = 4 * (4 * (32 + 32) + 32) + (4 * (32 + 64) + 64) + (4 * (64 + 32) + 32)
    assert totals["wrapped_params_after"] == 2 * per_layer
    assert totals["wrapped_layers"] == 12


def test_compare_produces_table(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    rc = main(["compare", "--config", TINY, "--steps", "6", "--eval-every", "3",
               "--methods", "full,lora,decay,svd,head", "--out", str(out)])
    assert rc == 0
    table = (out / "compare.md").read_text()
    for m in ("full", "lora", "decay", "svd", "head"):
        assert f"| {m} |" in table
    data = json.loads((out / "compare.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["decay"]["w_free"] and not rows["lora"]["w_free"]
    assert rows["decay"]["deployed_params"] < rows["full"]["deployed_params"]
    assert rows["head"]["trainable_params"] < rows["decay"]["trainable_params"]
    assert (out / "compare_curves.png").is_file()
    assert (out / "compare_accuracy_params.png").is_file()


def test_compare_lr_grid_picks_on_validation(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    rc = main(["compare", "--config", TINY, "--steps", "4", "--eval-every", "2",
               "--methods", "lora,head", "--seeds", "0,1", "--lr-grid", "1e-9,3e-2",
               "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["lr_grid"] == [1e-9, 3e-2]
    for row in data["rows"]:
        runs = {lr: [json.loads((out / f"{row['method']}-lr{lr}-s{s}" / "results.json")
                                .read_text()) for s in (0, 1)] for lr in ("1e-09", "0.03")}
        val = {lr: sum(r["final_val_acc"] for r in rs) / 2 for lr, rs in runs.items()}
        assert row["lr_grid_val_acc"] == pytest.approx(val)
        best = max(sorted(val, key=float), key=lambda k: val[k])  # ties: the smaller lr
        assert row["lr"] == pytest.approx(float(best))
        # the reported test accuracy is the best-validation lr's, whatever the test says
        assert row["test_accs"] == [r["test_acc"] for r in runs[best]]
    assert "chosen by mean validation accuracy" in (out / "compare.md").read_text()


def test_compare_bad_lr_grid(tmp_path: Path, capsys) -> None:
    assert main(["compare", "--config", TINY, "--methods", "lora", "--lr-grid", "1e-3,fast",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--lr-grid must be comma-separated numbers" in _err(capsys)
    assert main(["compare", "--config", TINY, "--methods", "lora", "--lr-grid", "1e-3,-1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "every lr of the grid must be in (0, 10)" in _err(capsys)


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_bad_config_key(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("rnak: 4\n")
    assert main(["run", "--config", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "unknown config key 'rnak'" in err and "did you mean 'rank'" in err
    assert not (tmp_path / "r").exists()


def test_wrong_type(tmp_path: Path, capsys) -> None:
    assert main(["run", "--config", TINY, "--rank", "four", "--run-dir", str(tmp_path / "r")]) == 2
    assert "'rank' must be int" in _err(capsys)


def test_missing_data_file(tmp_path: Path, capsys) -> None:
    rc = main(["run", "--config", TINY, "--data", str(tmp_path / "nope.csv"),
               "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    err = _err(capsys)
    assert "nope.csv" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_missing_label_column(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("text,sentiment\n" + "".join(f"good movie {i},{i % 2}\n" for i in range(40)))
    rc = main(["run", "--config", TINY, "--data", str(csv), "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    err = _err(capsys)
    assert "label" in err and "sentiment" in err
    assert not (tmp_path / "r").exists()


def test_offline_hub_model_fails_fast(tmp_path: Path, capsys) -> None:
    t = time.time()
    rc = main(["run", "--config", TINY, "--model", "google/bert_uncased_L-2_H-128_A-2",
               "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    assert time.time() - t < 60
    err = _err(capsys).lower()
    assert "local" in err and "internet" in err
    assert not (tmp_path / "r").exists()


def test_bad_schedule_and_method(tmp_path: Path, capsys) -> None:
    rc = main(["run", "--config", TINY, "--schedule", "{start: 0.9, end: 0.2}",
               "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and "out of order" in _err(capsys)
    rc = main(["run", "--config", TINY, "--method", "decay+noize", "--run-dir", str(tmp_path / "r")])
    assert rc == 2 and "did you mean 'decay+noise'" in _err(capsys)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "decaylora", *args]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Kill a training process with SIGKILL after its second checkpoint, resume it, and get
    bitwise the adapters and metrics of an uninterrupted run (CPU, same seed)."""
    common = ["--config", TINY, "--steps", "240", "--checkpoint-every", "7", "--eval-every", "60",
              "--method", "decay+noise+c"]
    kill_after = random.Random().randint(10, 150)  # a random step; printed on failure
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    full = tmp_path / "full"
    subprocess.run(_cli("run", *common, "--run-dir", str(full)), check=True, env=env,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("run", *common, "--run-dir", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = killed / "checkpoint" / "state.json"
    while time.time() < deadline:
        try:
            if ckpt.is_file() and json.loads(ckpt.read_text()).get("step", 0) >= kill_after:
                break
        except (OSError, ValueError):  # caught mid-rename: look again
            pass
        if proc.poll() is not None:
            pytest.fail(f"training finished before it could be killed (step {kill_after})")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    subprocess.run(_cli("run", "--resume", str(killed)), check=True, env=env, capture_output=True)
    a = load_file(full / "adapter" / "adapter.safetensors")
    b = load_file(killed / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = json.loads((full / "results.json").read_text())
    rb = json.loads((killed / "results.json").read_text())
    assert rb["resumed_from_step"] is not None and rb["resumed_from_step"] >= kill_after, kill_after
    assert ra["test_acc"] == rb["test_acc"] and ra["test_loss"] == rb["test_loss"]
    ma = (full / "metrics.jsonl").read_text().splitlines()
    mb = (killed / "metrics.jsonl").read_text().splitlines()
    assert ma == mb

    # SIGTERM (and Ctrl-C) is caught: the step finishes, a checkpoint is written, exit 130
    termed = tmp_path / "termed"
    proc = subprocess.Popen(_cli("run", *common, "--run-dir", str(termed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = termed / "metrics.jsonl"
    while not (log.is_file() and len(log.read_text().splitlines()) >= 20):
        assert proc.poll() is None, "finished before SIGTERM"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "resume with --resume" in err
    state = json.loads((termed / "checkpoint" / "state.json").read_text())
    assert 40 <= state["step"] < 240  # checkpointed where it stopped, not at a multiple of 7
    subprocess.run(_cli("run", "--resume", str(termed)), check=True, env=env, capture_output=True)
    c = load_file(termed / "adapter" / "adapter.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert (termed / "metrics.jsonl").read_text().splitlines() == ma


def test_resume_with_different_config_is_refused(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: tiny\nmodel: tiny-bert\nrank: 4\n")
    (run_dir / "checkpoint").mkdir()
    assert main(["run", "--resume", str(run_dir), "--rank", "8"]) == 2
    assert "different config" in _err(capsys)


def test_vision_pretrain_stage_is_cached(tmp_path: Path) -> None:
    """The two-stage flow trains stage 1 once; a second run loads it and repeats the result."""
    cache = tmp_path / "cache"
    args = ["run", "--config", str(ROOT / "configs" / "vision.yaml"), "--steps", "3",
            "--pretrain-steps", "3", "--max-train", "400", "--max-eval", "100", "--max-val",
            "100", "--eval-every", "3", "--progress", "false", "--cache-dir", str(cache)]
    assert main(args + ["--run-dir", str(tmp_path / "a")]) == 0
    assert main(args + ["--run-dir", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert a["data"]["pretrain"]["cached"] is False and b["data"]["pretrain"]["cached"] is True
    assert len(list(cache.glob("pretrain-*.safetensors"))) == 1
    assert b["data"]["pretrain"]["test_acc"] == a["data"]["pretrain"]["test_acc"]
    assert b["test_acc"] == a["test_acc"]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    """Every config in configs/ loads with all keys known and values valid (a typo in a shipped
    config would otherwise surface only when a user runs it)."""
    from decaylora.experiment import ExperimentConfig

    cfg = ExperimentConfig.from_yaml(path)
    assert cfg.name == path.stem


def test_vision_best_is_the_vision_flow_with_the_best_recipe() -> None:
    """configs/vision-best.yaml changes only the compression recipe of configs/vision.yaml, so
    its stage 1 (the cached pre-training) and data are the ones the results were measured on."""
    import yaml

    base = yaml.safe_load((ROOT / "configs" / "vision.yaml").read_text())
    best = yaml.safe_load((ROOT / "configs" / "vision-best.yaml").read_text())
    changed = {k for k in base.keys() | best.keys() if base.get(k) != best.get(k)}
    assert changed == {"name", "method", "rank", "rank_budget", "rank_budget_min_rank", "lr",
                       "kd_weight", "kd_temperature", "kd_feature_weight"}
