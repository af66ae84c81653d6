"""Hostile input: every bad input fails early with a clear, specific message (what is wrong and
what to do), exit code 2 and no traceback from the CLI, and leaves no run directory, partial
export or corrupt checkpoint behind. docs/errors.md lists each case with its message.

Bad inputs already covered elsewhere (not repeated here): unknown YAML config key, wrong value
type, missing data file, missing label column, offline hub model, start >= end, method typo,
resume with a different config (tests/test_cli.py); target typos, rank above full rank / not
shrinking, unsupported layer types (tests/test_injection.py); corrupt exports and adapters
(tests/test_export.py); truncated checkpoint files and NaN loss in the loop (tests/test_training.py).
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_mlp, mlp_config
from safetensors.torch import load_file
from torch import nn

import decaylora as dl
from decaylora.cli import main
from decaylora.experiment import ExperimentConfig
from decaylora.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny models only slow down with more intra-op threads on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def fails(capsys, run_dir: Path | None, *argv: str, command: str = "run") -> str:
    """Run the CLI in-process; assert exit code 2, one clean error line, no traceback and no
    run directory. Returns the message."""
    args = [command, *argv]
    if command == "run" and "--config" not in argv and "--resume" not in argv:
        args[1:1] = ["--config", TINY]
    if run_dir is not None:
        args += ["--run-dir", str(run_dir)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("decaylora: error: ") and "Traceback" not in err, err
    if run_dir is not None:
        assert not run_dir.exists(), f"{run_dir} was created"
    return " ".join(err.split())  # one line, for the regexes


def write_csv(path: Path, rows: list[tuple]) -> Path:
    path.write_text("text,label\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


# ----- configuration -------------------------------------------------------------------------
def test_unknown_flag_suggests_the_close_one(tmp_path, capsys) -> None:
    msg = fails(capsys, tmp_path / "r", "--rnak", "4")
    assert re.search(r"unknown option --rnak \(did you mean --rank\?\).*--help", msg)
    msg = fails(capsys, None, "--model", "tiny-bert", "--rnak=4", command="summary")
    assert "did you mean --rank?" in msg


def test_scientific_notation_is_a_number(tmp_path) -> None:
    """PyYAML reads 1e-3 as a string; it used to be refused ('lr' must be float)."""
    cfg = ExperimentConfig.from_dict({"lr": "1e-3", "noise_scale": "1e20", "method": "notes-a"})
    assert cfg.lr == 1e-3 and cfg.noise_scale == 1e20
    (tmp_path / "c.yaml").write_text("lr: 5e-5\nweight_decay: 1e-2\n")
    assert ExperimentConfig.from_yaml(tmp_path / "c.yaml").lr == 5e-5


@pytest.mark.parametrize("rank", ["0", "-4"])
def test_rank_zero_or_negative(tmp_path, capsys, rank) -> None:
    msg = fails(capsys, tmp_path / "r", "--rank", rank)
    assert f"rank must be >= 1, got {rank}" in msg


@pytest.mark.parametrize("rank,pattern", [
    ("40", r"rank 40 is larger than the layer's full rank 32 .*choose r < 32"),
    ("20", r"rank 20 would make the layer larger after compression .*shrinks only for r < 16\.0"
           r"\. Lower r"),
])
def test_rank_too_large_for_the_layer(tmp_path, capsys, rank, pattern) -> None:
    msg = fails(capsys, tmp_path / "r", "--rank", rank)
    assert re.search(r"bert\.encoder\.layer\.0\.attention\.self\.query: " + pattern, msg)


def test_lr_out_of_range(tmp_path, capsys) -> None:
    assert "lr must be in (0, 10), got 10000.0" in fails(capsys, tmp_path / "r", "--lr", "1e4")


@pytest.mark.parametrize("flags,pattern", [
    (["--weight-decay", "-1"], r"weight_decay must be >= 0 \(0 turns it off\), got -1"),
    (["--grad-clip", "-1"], r"grad_clip must be >= 0 \(0 turns it off\), got -1"),
    (["--steps", "null", "--epochs", "0"], r"epochs must be > 0 \(or set steps\), got 0"),
    (["--warmup-fraction", "1.5"], r"warmup_fraction must be in \[0, 1\), got 1\.5"),
    (["--threads", "-1"], r"threads must be >= 1 .*got -1"),
    (["--task", "vison"], r"unknown task 'vison' \(did you mean 'vision'\?\)"),
])
def test_out_of_range_settings(tmp_path, capsys, flags, pattern) -> None:
    assert re.search(pattern, fails(capsys, tmp_path / "r", *flags))


def test_schedule_typos_suggest_the_close_name(tmp_path, capsys) -> None:
    msg = fails(capsys, tmp_path / "r", "--schedule", "{strat: 0.1}")
    assert re.search(r"unknown schedule key 'strat' \(did you mean 'start'\?\); valid keys: "
                     r"shape, start, end", msg)
    msg = fails(capsys, tmp_path / "r", "--schedule", "{shape: cosin}")
    assert "unknown decay schedule shape 'cosin' (did you mean 'cosine'?)" in msg


@pytest.mark.parametrize("content,pattern", [
    (None, r"config file .*nope\.yaml not found; pass an existing YAML file"),
    ("rank: 4\n  steps: [\n", r"nope\.yaml is not valid YAML: mapping values are not allowed"),
    ("- rank\n- 4\n", r"nope\.yaml must hold a mapping of config keys, got list"),
])
def test_bad_config_file(tmp_path, capsys, content, pattern) -> None:
    path = tmp_path / "nope.yaml"
    if content is not None:
        path.write_text(content)
    assert re.search(pattern, fails(capsys, tmp_path / "r", "--config", str(path)))


# ----- model and targets ---------------------------------------------------------------------
def test_unknown_target_module(tmp_path, capsys) -> None:
    msg = fails(capsys, tmp_path / "r", "--targets", "qury,value")
    assert re.search(r"target module 'qury' matched no module of the model\. Close names: query"
                     r".*`decaylora summary` lists the model's modules", msg)


@pytest.fixture(scope="module")
def squeezebert_dir(tmp_path_factory) -> Path:
    """A local SqueezeBERT: its encoder is made of nn.Conv1d only, which decaylora cannot wrap,
    and its module names are none of the known families'."""
    from transformers import AutoTokenizer, SqueezeBertConfig, SqueezeBertForSequenceClassification

    from decaylora.models import _minilm_folder

    d = tmp_path_factory.mktemp("squeezebert")
    tok = AutoTokenizer.from_pretrained(_minilm_folder(), local_files_only=True)
    cfg = SqueezeBertConfig(vocab_size=tok.vocab_size, hidden_size=32, embedding_size=32,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1,
                            intermediate_groups=1, output_groups=1, num_labels=2)
    SqueezeBertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_model_without_supported_layers(tmp_path, capsys, squeezebert_dir) -> None:
    msg = fails(capsys, tmp_path / "r", "--model", str(squeezebert_dir))
    assert re.search(r"cannot tell which layers of SqueezeBertForSequenceClassification to adapt"
                     r".*pass the layer names yourself with --targets", msg)
    msg = fails(capsys, tmp_path / "r", "--model", str(squeezebert_dir), "--targets", "query,value")
    assert re.search(r"unsupported layer type Conv1d: decaylora wraps nn\.Linear, nn\.Conv2d and "
                     r"transformers Conv1D", msg)
    # library: a model with no Linear/Conv2d/Conv1D at all
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4))
    with pytest.raises(dl.InjectionError, match=r"no module matched the targets .*module types: "
                       r"Embedding, LayerNorm, Sequential; supported: Linear, Conv2d, Conv1D"):
        dl.wrap(model, dl.DecayConfig(r=2, target_types=["Linear", "Conv2d", "Conv1D"]))
    assert all(p.requires_grad for p in model.parameters())  # untouched


def test_max_length_beyond_the_model(tmp_path, capsys) -> None:
    msg = fails(capsys, tmp_path / "r", "--max-length", "512")
    assert ("max_length 512 is longer than the 128 positions model 'tiny-bert' can read; use "
            "--max-length 128 or less") in msg


# ----- data ----------------------------------------------------------------------------------
def test_empty_dataset(tmp_path, capsys) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("text,label\n")
    msg = fails(capsys, tmp_path / "r", "--data", str(csv))
    assert "empty.csv is empty; it needs a header row and at least one row" in msg
    msg = fails(capsys, tmp_path / "r", "--max-train", "0")
    assert "max_train must be >= 1 (or null for no limit/default), got 0" in msg


def test_labels_not_0_to_k_minus_1(tmp_path, capsys) -> None:
    csv = write_csv(tmp_path / "d.csv", [(f"review {i}", 1 + i % 2) for i in range(40)])
    msg = fails(capsys, tmp_path / "r", "--data", str(csv))
    assert re.search(r"integer labels must be exactly 0\.\.K-1 with every class present, found "
                     r"\[1, 2\]; remap them to 0\.\.1 or store the labels as class-name strings",
                     msg)


def test_single_class(tmp_path, capsys) -> None:
    """Used to train silently as a 1-output regression."""
    csv = write_csv(tmp_path / "one.csv", [(f"review {i}", 0) for i in range(40)])
    msg = fails(capsys, tmp_path / "r", "--data", str(csv))
    assert re.search(r"the labels hold only 1 class \(0\); a classifier needs at least 2\. "
                     r"Check --label-column", msg)


def test_text_column_with_non_strings(tmp_path, capsys) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"text": 5 if i == 3 else f"review {i}", "label": i % 2})
                           for i in range(40)))
    msg = fails(capsys, tmp_path / "r", "--data", str(p))
    assert re.search(r"row 3 \(0-based, header excluded\) of text column 'text' is 5 \(int\), "
                     r"not a string; fill in or drop that row", msg)


@pytest.mark.parametrize("shape,labels,pattern", [
    ((40, 64), 40, r"images have shape \(40, 64\); expected \(N, H, W\), \(N, H, W, C\) or "
                   r"\(N, C, H, W\) with C in 1/3/4"),
    ((40, 8, 8, 5), 40, r"images have shape \(40, 8, 8, 5\); neither axis 1 nor the last axis is "
                        r"a channel axis"),
    ((40, 8, 8), 30, r"labels have shape \(30,\) for 40 images; expected \(40,\)"),
])
def test_image_array_of_wrong_shape(tmp_path, capsys, shape, labels, pattern) -> None:
    p = tmp_path / "images.npz"
    np.savez(p, x=np.zeros(shape, dtype=np.uint8), y=np.arange(labels) % 2)
    msg = fails(capsys, tmp_path / "r", "--task", "vision", "--model", "vgg11", "--data", str(p))
    assert re.search(pattern, msg)


def test_hub_dataset_offline_fails_fast(tmp_path, capsys, monkeypatch) -> None:
    import datasets.config

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # offline, whatever the machine
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    t = time.time()
    msg = fails(capsys, tmp_path / "r", "--data", "imdb")
    assert time.time() - t < 30
    assert re.search(r"cannot load dataset 'imdb' from the Hugging Face hub: no internet .*"
                     r"pass a local CSV/JSONL/Parquet file with --data PATH", msg)


# ----- run directories, resume, checkpoints --------------------------------------------------
def test_existing_run_dir_is_refused_and_untouched(tmp_path, capsys) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    assert main(["run", "--config", TINY, "--run-dir", str(run_dir)]) == 2
    assert re.search(r"run directory .* already exists and is not empty; choose another "
                     r"--run-dir or resume it with --resume", capsys.readouterr().err)
    assert [p.name for p in run_dir.iterdir()] == ["keep.txt"]


def test_resume_without_run_or_checkpoint(tmp_path, capsys) -> None:
    msg = fails(capsys, None, "--resume", str(tmp_path / "nothing"))
    assert "is not a run directory (no config.yaml)" in msg
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(TINY, half / "config.yaml")
    msg = fails(capsys, None, "--resume", str(half))
    assert "has no checkpoint to resume (finished, or stopped before the first checkpoint)" in msg


NAN_FLAGS = ["--method", "notes-a", "--noise-scale", "1e20", "--checkpoint-every", "1",
             "--eval-every", "100"]


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory) -> tuple[Path, int, str]:
    """notes-a with noise 1e20 x the weights' std: the loss is NaN at the first noisy step
    (step 2 of 12). A learning rate below the config limit (lr < 10) does not make this
    LayerNorm'd model diverge within a tiny run (Adam steps are bounded by lr): the noise does."""
    import contextlib
    import io

    run_dir = tmp_path_factory.mktemp("nan") / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["run", "--config", TINY, *NAN_FLAGS, "--run-dir", str(run_dir)])
    return run_dir, rc, " ".join(err.getvalue().split())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(nan_run) -> None:
    run_dir, rc, msg = nan_run
    assert rc == 2 and msg.startswith("decaylora: error: ") and "Traceback" not in msg
    assert re.search(r"loss became nan at step 2 \(lr=.*\)\. Lower the learning rate \(e\.g\. "
                     r"--lr 0\.0001\), or the noise \(--noise-scale; it is on at this step\) and "
                     r"start a new run \(--resume keeps the old settings\); the last good "
                     r"checkpoint \(step 2\) is kept in .*checkpoint", msg)
    assert not (run_dir / "results.json").exists() and not (run_dir / "export").exists()
    state = load_checkpoint(run_dir / "checkpoint")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values()
               if v.dtype.is_floating_point)
    assert not (run_dir / "checkpoint.tmp").exists()


def test_corrupt_checkpoint_on_resume(nan_run, tmp_path, capsys) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(nan_run[0], run_dir)
    f = run_dir / "checkpoint" / "state.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    before = f.read_bytes()
    msg = fails(capsys, None, "--resume", str(run_dir))
    assert re.search(r"checkpoint .*checkpoint is corrupt or incomplete \(.*\); it cannot be "
                     r"resumed: restore an earlier copy, or start the run again", msg)
    assert f.read_bytes() == before and not (run_dir / "results.json").exists()


def test_disk_full_while_checkpointing(tmp_path, capsys, monkeypatch) -> None:
    import decaylora.training as training

    real, calls = training.save_file, []

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 1:
            return real(tensors, path, metadata)
        Path(path).write_bytes(b"\0" * 10)  # a truncated write, then the disk is full
        raise ENOSPC

    monkeypatch.setattr(training, "save_file", save_file)
    run_dir = tmp_path / "r"
    rc = main(["run", "--config", TINY, "--checkpoint-every", "2", "--eval-every", "100",
               "--run-dir", str(run_dir)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "Traceback" not in err and len(calls) == 2
    assert re.search(r"could not write checkpoint .*checkpoint: No space left on device; the "
                     r"previous checkpoint in .* is kept: free disk space, then continue with "
                     r"`decaylora run --resume .*`", err)
    assert load_checkpoint(run_dir / "checkpoint")["step"] == 2  # the good one, intact
    assert not (run_dir / "checkpoint.tmp").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_disk_full_while_exporting(tmp_path, monkeypatch, existing) -> None:
    import decaylora.export as export

    model = dl.compress(dl.wrap(make_mlp(), mlp_config()), force=True)
    out = tmp_path / "out"
    if existing:  # an earlier export must survive a failed save unchanged
        dl.save_compressed(model, out, extra={"n": 1})
        old = {p.name: p.read_bytes() for p in out.iterdir()}

    def save_model(m, path, metadata=None):
        Path(path).write_bytes(b"\0" * 10)
        raise ENOSPC

    monkeypatch.setattr(export, "save_model", save_model)
    with pytest.raises(dl.ExportError, match=r"could not write .*model\.safetensors: \[Errno 28\] "
                       r"No space left on device; nothing was saved \(free disk space"):
        dl.save_compressed(model, out, extra={"n": 2})
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # no temp files either
    else:
        assert not out.exists()  # the directory it created is gone again


def test_disk_full_while_saving_adapter(tmp_path, monkeypatch) -> None:
    import decaylora.export as export

    def save_file(tensors, path, metadata=None):
        raise ENOSPC

    monkeypatch.setattr(export, "save_file", save_file)
    with pytest.raises(dl.ExportError, match=r"adapter\.safetensors: .*No space left on device"):
        dl.save_adapter(dl.wrap(make_mlp(), mlp_config()), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_output_path_under_a_file(tmp_path, capsys) -> None:
    """An OS error from the machine (here ENOTDIR; also disk full, permission denied,
    read-only file system) is one clean line with what to do, not a traceback."""
    (tmp_path / "f").write_text("a file")
    msg = fails(capsys, None, "--model", "tiny-bert", "--rank", "4", "--json",
                str(tmp_path / "f" / "s.json"), command="summary")
    assert re.search(r"Not a directory \(.*f/s\.json\); a part of the path is a file, not a "
                     r"directory; choose another path", msg)


# ----- other commands ------------------------------------------------------------------------
def test_export_of_an_unfinished_run(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    shutil.copy(TINY, run_dir / "config.yaml")
    msg = fails(capsys, None, str(run_dir), command="export")
    assert re.search(r"has no results\.json: not a finished run \(resume it with `decaylora run "
                     r"--resume RUN_DIR` first\)", msg)
    msg = fails(capsys, None, str(tmp_path), command="export")
    assert "has no adapter/ directory: only finished runs of wrapped methods" in msg


def test_compare_bad_methods_and_seeds(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    msg = fails(capsys, None, "--config", TINY, "--methods", "full,lora", "--seeds", "0,one",
                "--out", str(out), command="compare")
    assert "--seeds must be comma-separated integers, e.g. --seeds 0,1,2; got '0,one'" in msg
    msg = fails(capsys, None, "--config", TINY, "--methods", "full,lorra", "--out", str(out),
                command="compare")
    assert "unknown method 'lorra' (did you mean 'lora'?)" in msg
    assert not out.exists()


def test_checkpoint_file_names_after_disk_full_are_clean(tmp_path, monkeypatch) -> None:
    """Library level: a failed checkpoint write leaves the previous checkpoint bitwise intact."""
    import decaylora.training as training

    training.save_checkpoint(tmp_path / "ck", {"step": 1, "w": torch.ones(3)})
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    monkeypatch.setattr(training, "save_file", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(dl.DecayLoraError, match=r"could not write checkpoint .*No space left"):
        training.save_checkpoint(tmp_path / "ck", {"step": 2, "w": torch.zeros(3)})
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert torch.equal(load_file(tmp_path / "ck" / "state.safetensors")["t0"], torch.ones(3))
