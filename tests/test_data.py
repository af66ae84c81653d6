"""Tests for decaylora.data on the real offline resources and on small generated files."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from decaylora.data import (
    FASHION_MNIST_DIR,
    DataError,
    ImageSplits,
    TextSplits,
    _load_rotten_tomatoes,
    hub_unreachable_reason,
    load_image_dataset,
    load_text_dataset,
    make_image_loader,
    make_text_loader,
    read_idx,
)
from decaylora.errors import DecayLoraError

HAS_FASHION = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not HAS_FASHION, reason="apt-get install -y dataset-fashion-mnist"
)


def _hub_is_reachable() -> bool:
    return hub_unreachable_reason(timeout=2.0) is None


# ------------------------------------------------------------------ Rotten Tomatoes


def test_rotten_tomatoes_counts_match_data_notes():
    texts, labels, groups, path = _load_rotten_tomatoes()
    assert path.endswith("rotten_tomatoes_corpus_full.csv.bz2")
    assert len(texts) == 12752
    assert sum(labels) == 7368  # fresh
    assert len(texts) - sum(labels) == 5384  # rotten
    assert len(set(groups)) == 507
    assert len(set(texts)) == len(texts)


def test_rotten_tomatoes_split_is_grouped_by_movie_and_complete():
    s = load_text_dataset("rotten_tomatoes", seed=0)
    texts, _, groups, _ = _load_rotten_tomatoes()
    movie = dict(zip(texts, groups, strict=True))
    parts = [
        {movie[t] for t in s.train_texts},
        {movie[t] for t in s.val_texts},
        {movie[t] for t in s.test_texts},
    ]
    assert not parts[0] & parts[1]
    assert not parts[0] & parts[2]
    assert not parts[1] & parts[2]
    n = len(s.train_texts) + len(s.val_texts) + len(s.test_texts)
    assert n == 12752
    assert 0.10 < len(s.test_texts) / n < 0.20
    assert 0.05 < len(s.val_texts) / n < 0.15
    assert s.num_labels == 2 and s.label_names == ["rotten", "fresh"]
    assert 0.5 < s.majority_baseline < 0.7
    # label 1 = fresh
    fresh = set(texts[i] for i, y in enumerate(_load_rotten_tomatoes()[1]) if y == 1)
    assert all((t in fresh) == (y == 1) for t, y in zip(s.train_texts, s.train_labels, strict=True))


def test_rotten_tomatoes_split_deterministic_per_seed_and_differs_across_seeds():
    a = load_text_dataset("rotten_tomatoes", seed=1, max_train=300, max_eval=100)
    b = load_text_dataset("rotten_tomatoes", seed=1, max_train=300, max_eval=100)
    c = load_text_dataset("rotten_tomatoes", seed=2, max_train=300, max_eval=100)
    assert a.train_texts == b.train_texts and a.test_texts == b.test_texts
    assert a.train_labels == b.train_labels
    assert a.test_texts != c.test_texts
    assert len(a.train_texts) == 300 and len(a.val_texts) == 100 and len(a.test_texts) == 100


def test_majority_baseline():
    s = TextSplits([], [], [], [], ["a", "b", "c", "d"], [1, 1, 1, 0], 2, ["n", "p"], "x")
    assert s.majority_baseline == pytest.approx(0.75)


# ------------------------------------------------------------------ local text files


def _write_csv(path: Path, rows: list[tuple], header=("text", "label", "group")) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(n: int = 60) -> list[tuple]:
    return [(f"text number {i}", ["neg", "pos"][i % 2], f"g{i % 12}") for i in range(n)]


def test_csv_string_labels_sorted_and_stratified(tmp_path):
    p = _write_csv(tmp_path / "d.csv", _rows())
    s = load_text_dataset(str(p), val_fraction=0.2, test_fraction=0.2, seed=3)
    assert s.label_names == ["neg", "pos"] and s.num_labels == 2
    assert len(s.train_texts) + len(s.val_texts) + len(s.test_texts) == 60
    assert sorted(s.test_labels) == [0] * 6 + [1] * 6  # stratified: 20% of each class
    for t, y in zip(s.train_texts, s.train_labels, strict=True):
        assert y == int(t.split()[-1]) % 2  # "pos" (odd rows) -> 1


def test_csv_group_column_keeps_groups_apart(tmp_path):
    p = _write_csv(tmp_path / "d.csv", _rows())
    s = load_text_dataset(str(p), group_column="group", val_fraction=0.2, test_fraction=0.2)
    group = {f"text number {i}": f"g{i % 12}" for i in range(60)}
    tr = {group[t] for t in s.train_texts}
    te = {group[t] for t in s.test_texts}
    va = {group[t] for t in s.val_texts}
    assert te and va and not (tr & te) and not (tr & va) and not (va & te)


def test_jsonl_tsv_parquet_int_labels(tmp_path):
    rows = [{"sentence": f"s {i}", "y": i % 3} for i in range(30)]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    s = load_text_dataset(str(jl), text_column="sentence", label_column="y")
    assert s.num_labels == 3 and s.label_names == ["0", "1", "2"]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"{i}\t{i % 2}\n" for i in range(20)))
    s2 = load_text_dataset(str(tsv))  # numeric-looking texts are read as strings
    assert all(isinstance(t, str) for t in s2.train_texts) and s2.num_labels == 2
    import pandas as pd

    pq = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    s3 = load_text_dataset(str(pq), text_column="sentence", label_column="y", seed=0)
    s1 = load_text_dataset(str(jl), text_column="sentence", label_column="y", seed=0)
    assert s3.train_texts == s1.train_texts


def test_missing_file_names_path_and_formats(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as e:
        load_text_dataset(str(missing))
    assert str(missing) in str(e.value) and ".parquet" in str(e.value)
    assert isinstance(e.value, DecayLoraError) and isinstance(e.value, ValueError)


def test_unknown_dataset_name_suggests():
    with pytest.raises(DataError, match="rotten_tomatoes"):
        load_text_dataset("rotten_tomatos")


def test_missing_column_lists_columns_and_close_match(tmp_path):
    p = _write_csv(tmp_path / "d.csv", _rows(), header=("review", "label", "group"))
    with pytest.raises(DataError) as e:
        load_text_dataset(str(p), text_column="reviews")
    msg = str(e.value)
    assert "'reviews'" in msg and "did you mean 'review'" in msg and "'group'" in msg


def test_bad_int_labels(tmp_path):
    p = _write_csv(tmp_path / "d.csv", [(f"t{i}", [1, 5][i % 2], "g") for i in range(10)])
    with pytest.raises(DataError, match="0..K-1"):
        load_text_dataset(str(p))
    p2 = _write_csv(tmp_path / "e.csv", [(f"t{i}", [0, -1][i % 2], "g") for i in range(10)])
    with pytest.raises(DataError, match="0..K-1"):
        load_text_dataset(str(p2))


def test_mixed_or_float_labels(tmp_path):
    p = _write_csv(tmp_path / "d.csv", [(f"t{i}", [0.5, 1][i % 2], "g") for i in range(10)])
    with pytest.raises(DataError, match="row 0"):
        load_text_dataset(str(p))


def test_non_string_text_names_row(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"text": "fine", "label": 0}, {"text": "ok", "label": 1}, {"text": 3, "label": 0}]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="row 2"):
        load_text_dataset(str(p))
    p2 = tmp_path / "d.csv"
    p2.write_text("text,label\nhello,0\n,1\n")  # empty cell
    with pytest.raises(DataError, match="row 1"):
        load_text_dataset(str(p2))


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "d.csv"
    p.write_text(content)
    with pytest.raises(DataError, match="empty"):
        load_text_dataset(str(p))


def test_bad_fractions():
    with pytest.raises(DataError, match="sum"):
        load_text_dataset("rotten_tomatoes", val_fraction=0.5, test_fraction=0.5)


# ------------------------------------------------------------------ hub datasets offline


@pytest.mark.skipif(_hub_is_reachable(), reason="only meaningful without internet")
@pytest.mark.parametrize("name", ["imdb", "sst2", "hf:someone/some_set"])
def test_offline_text_hub_fails_fast_with_local_alternative(name):
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        load_text_dataset(name)
    assert time.monotonic() - t0 < 30
    msg = str(e.value)
    assert "no internet" in msg and "--data PATH" in msg and "CSV/JSONL/Parquet" in msg


@pytest.mark.skipif(_hub_is_reachable(), reason="only meaningful without internet")
def test_offline_cifar10_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(DataError, match="no internet"):
        load_image_dataset("cifar10")
    assert time.monotonic() - t0 < 30


def test_unreachable_endpoint_fails_fast(monkeypatch):
    """Whatever the machine's network, a dead endpoint is reported within seconds."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    assert hub_unreachable_reason(timeout=2.0) is not None
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    t0 = time.monotonic()
    with pytest.raises(DataError, match="no internet"):
        load_text_dataset("amazon_polarity")
    assert time.monotonic() - t0 < 30


def _fake_hub(monkeypatch, dsd):
    """Pretend the hub is reachable and serves ``dsd`` (exercises the real loading code)."""
    import datasets

    import decaylora.data as d

    calls = []
    monkeypatch.setattr(d, "hub_unreachable_reason", lambda timeout=4.0: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or dsd)
    return calls


def test_hub_text_path_sst2_uses_validation_as_test(monkeypatch):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"sentence": Value("string"),
                      "label": ClassLabel(names=["negative", "positive"])})
    train = Dataset.from_dict(
        {"sentence": [f"tr {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}, feats)
    val = Dataset.from_dict({"sentence": ["v0", "v1", "v2"], "label": [0, 1, 1]}, feats)
    test = Dataset.from_dict(
        {"sentence": ["t0", "t1"], "label": [-1, -1]},
        Features({"sentence": Value("string"), "label": Value("int64")}))
    calls = _fake_hub(monkeypatch, DatasetDict(train=train, validation=val, test=test))
    s = load_text_dataset("sst2", val_fraction=0.25, seed=0)
    assert calls == [("stanfordnlp/sst2",)]
    assert s.test_texts == ["v0", "v1", "v2"] and s.test_labels == [0, 1, 1]
    assert len(s.val_texts) == 10 and len(s.train_texts) == 30
    assert not set(s.val_texts) & set(s.train_texts)
    assert s.label_names == ["negative", "positive"]


def test_hub_text_path_generic_columns_and_errors(monkeypatch):
    from datasets import Dataset, DatasetDict

    train = Dataset.from_dict({"content": [f"c{i}" for i in range(20)], "label": [0, 1] * 10})
    test = Dataset.from_dict({"content": ["x", "y"], "label": [1, 0]})
    _fake_hub(monkeypatch, DatasetDict(train=train, test=test))
    s = load_text_dataset("amazon_polarity", max_train=5)
    assert s.test_texts == ["x", "y"] and len(s.train_texts) == 5
    with pytest.raises(DataError, match="did you mean 'content'"):
        load_text_dataset("hf:someone/reviews", text_column="contents")


def test_hub_cifar10_path_converts_images(monkeypatch):
    from datasets import Dataset, DatasetDict

    Image = pytest.importorskip("PIL.Image")

    rng = np.random.default_rng(0)

    def split(n):
        imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                for _ in range(n)]
        return Dataset.from_dict({"img": imgs, "label": [i % 10 for i in range(n)]})

    _fake_hub(monkeypatch, DatasetDict(train=split(40), test=split(10)))
    s = load_image_dataset("cifar10", val_fraction=0.25)
    assert s.train_x.shape == (30, 3, 32, 32) and s.test_x.shape == (10, 3, 32, 32)
    assert s.class_names[0] == "airplane" and s.num_classes == 10


# ------------------------------------------------------------------ images


@needs_fashion
def test_fashion_mnist_headers():
    assert read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz", header_only=True) == (
        60000, 28, 28)
    assert read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz", header_only=True) == (60000,)
    assert read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", header_only=True) == (
        10000, 28, 28)
    assert read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", header_only=True) == (10000,)


@needs_fashion
def test_fashion_mnist_load_shapes_and_normalisation():
    s = load_image_dataset("fashion_mnist", max_train=2000, max_eval=500, seed=0)
    assert s.train_x.shape == (2000, 1, 28, 28) and s.train_x.dtype == torch.float32
    assert s.val_x.shape == (500, 1, 28, 28) and s.test_x.shape == (500, 1, 28, 28)
    assert s.train_y.dtype == torch.int64 and s.num_classes == 10
    assert s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"
    assert abs(float(s.train_x.mean())) < 1e-3 and abs(float(s.train_x.std()) - 1) < 1e-2
    assert set(s.train_y.tolist()) == set(range(10))
    again = load_image_dataset("fashion_mnist", max_train=2000, max_eval=500, seed=0)
    assert torch.equal(s.train_y, again.train_y) and torch.equal(s.test_x, again.test_x)


def _idx_bytes(magic: int, dims: list[int], payload: bytes) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def test_idx_magic_and_truncation(tmp_path):
    good = tmp_path / "ok-images-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(_idx_bytes(2051, [2, 3, 3], bytes(range(18)))))
    arr = read_idx(good)
    assert arr.shape == (2, 3, 3) and arr[1, 2, 2] == 17
    bad = tmp_path / "bad-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(_idx_bytes(2052, [2, 3, 3], bytes(18))))
    with pytest.raises(DataError, match="magic number 2052"):
        read_idx(bad)
    short = tmp_path / "short-labels-idx1-ubyte.gz"
    short.write_bytes(gzip.compress(_idx_bytes(2049, [10], bytes(4))))
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)
    notgz = tmp_path / "x-ubyte.gz"
    notgz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError):
        read_idx(notgz)


def test_fashion_mnist_missing_says_apt(monkeypatch, tmp_path):
    import decaylora.data as d

    monkeypatch.setattr(d, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_image_dataset("fashion_mnist")


def test_digits_and_pretrain_finetune_split():
    s = load_image_dataset("digits", seed=0)
    assert s.train_x.shape[1:] == (1, 8, 8) and s.num_classes == 10
    n = len(s.train_y) + len(s.val_y) + len(s.test_y)
    assert n == 1797
    pre, fine = s.pretrain_finetune_split(0.5, seed=0)
    assert isinstance(pre, ImageSplits)
    assert len(pre.train_y) + len(fine.train_y) == len(s.train_y)
    assert abs(len(pre.train_y) - len(fine.train_y)) <= 10
    assert pre.test_x is s.test_x and fine.val_x is s.val_x
    with pytest.raises(DataError):
        s.pretrain_finetune_split(1.0)


def test_pretrain_finetune_parts_are_disjoint_and_seeded():
    n = 50
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n) % 5
    s = ImageSplits(x, y, x[:3], y[:3], x[:4], y[:4], 5, list("abcde"), "synthetic")
    pre, fine = s.pretrain_finetune_split(0.4, seed=7)
    ids_pre = set(pre.train_x[:, 0, 0, 0].long().tolist())
    ids_fine = set(fine.train_x[:, 0, 0, 0].long().tolist())
    assert len(ids_pre) == 20 and len(ids_fine) == 30
    assert not ids_pre & ids_fine and ids_pre | ids_fine == set(range(n))
    assert torch.bincount(pre.train_y).tolist() == [4] * 5  # stratified
    # each stored id keeps its own label
    ids = pre.train_x[:, 0, 0, 0].long()
    assert torch.equal(ids % 5, pre.train_y)
    again, _ = s.pretrain_finetune_split(0.4, seed=7)
    other, _ = s.pretrain_finetune_split(0.4, seed=8)
    assert torch.equal(again.train_x, pre.train_x)
    assert not torch.equal(other.train_x, pre.train_x)


@pytest.mark.parametrize(
    "shape,channels", [((20, 6, 6), 1), ((20, 6, 6, 3), 3), ((20, 3, 6, 6), 3), ((20, 6, 6, 1), 1)]
)
def test_npz_shapes(tmp_path, shape, channels):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    y = np.arange(20) % 2
    p = tmp_path / "a.npz"
    np.savez(p, images=x, labels=y)
    s = load_image_dataset(str(p), val_fraction=0.2, test_fraction=0.2)
    assert s.train_x.shape[1:] == (channels, 6, 6)
    assert len(s.train_y) + len(s.val_y) + len(s.test_y) == 20


def test_npz_wrong_ndim_and_keys(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, x=np.zeros((4, 5)), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        load_image_dataset(str(p))
    q = tmp_path / "b.npz"
    np.savez(q, pics=np.zeros((4, 5, 5)))
    with pytest.raises(DataError, match="'x'"):
        load_image_dataset(str(q))
    with pytest.raises(DataError, match="does not exist"):
        load_image_dataset(str(tmp_path / "c.npz"))


# ------------------------------------------------------------------ loaders


def test_make_text_loader_reproducible_and_padded():
    from decaylora.models import load_text_model

    _, tok = load_text_model("tiny-bert", 2)
    texts = [("word " * (i % 7 + 1)).strip() for i in range(40)]
    labels = [i % 2 for i in range(40)]

    def order(seed):
        dl = make_text_loader(tok, texts, labels, batch_size=8, max_length=16, shuffle=True,
                              seed=seed)
        return [b["input_ids"].tolist() for b in dl]

    assert order(5) == order(5)
    assert order(5) != order(6)
    batch = next(iter(make_text_loader(tok, texts, labels, batch_size=8, max_length=4,
                                       shuffle=False, seed=0)))
    assert {"input_ids", "attention_mask", "labels"} <= set(batch)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[1] <= 4
    assert batch["labels"].tolist() == labels[:8]
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][6].sum()


def test_make_image_loader_augment_shapes_and_reproducible():
    x = torch.randn(20, 1, 8, 8)
    y = torch.arange(20) % 3
    a = [(xb.clone(), yb) for xb, yb in make_image_loader(x, y, batch_size=6, shuffle=True,
                                                           seed=1, augment=True)]
    b = [(xb.clone(), yb) for xb, yb in make_image_loader(x, y, batch_size=6, shuffle=True,
                                                           seed=1, augment=True)]
    assert [t[0].shape for t in a] == [(6, 1, 8, 8)] * 3 + [(2, 1, 8, 8)]
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])
    plain = list(make_image_loader(x, y, batch_size=20, shuffle=False, seed=0))
    assert torch.equal(plain[0][0], x)
    aug = next(iter(make_image_loader(x, y, batch_size=20, shuffle=False, seed=0, augment=True)))
    assert not torch.equal(aug[0], x) and torch.equal(aug[1], y)
