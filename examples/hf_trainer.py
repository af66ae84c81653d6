"""decaylora with a plain Hugging Face ``Trainer``: wrap + one callback, then compress.

Fine-tunes a text classifier on the offline Rotten Tomatoes critic snippets while the frozen
pretrained weights decay out of the target layers, deletes them (``decaylora.compress``),
saves the W-free model, reloads it into a fresh dense skeleton and prints the test accuracy.

    python examples/hf_trainer.py --model tiny-bert --steps 20 --max-train 200   # ~seconds
    python examples/hf_trainer.py --model minilm --steps 400                     # real run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

import decaylora
from decaylora.data import load_text_dataset
from decaylora.integrations import DecayLoraCallback
from decaylora.models import default_modules_to_save, default_text_targets, load_text_model


class Encoded(torch.utils.data.Dataset):
    """Tokenised texts as a torch Dataset of dicts (padded per batch by the collator)."""

    def __init__(self, tokenizer, texts: list[str], labels: list[int], max_length: int) -> None:
        self.enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = self.labels[i]
        return item


def accuracy(trainer: Trainer, dataset: Encoded) -> float:
    pred = trainer.predict(dataset)
    return float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["minilm", "tiny-bert"], default="minilm")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps (Trainer max_steps)")
    p.add_argument("--max-train", type=int, default=4000, help="training examples")
    p.add_argument("--max-eval", type=int, default=500, help="test examples")
    p.add_argument("--rank", type=int, help="adapter rank (default: 16 for minilm, 4 for tiny-bert)")
    p.add_argument("--preset", default="default", help="decaylora method preset")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--out", default="runs/hf_trainer", help="where the W-free model is saved")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: 1 for tiny-bert, whose ops are too small to gain "
                        "from more; torch's default otherwise)")
    args = p.parse_args(argv)
    t0 = time.time()
    threads = args.threads or (1 if args.model == "tiny-bert" else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(args.seed)

    # data and model: nothing decaylora-specific yet
    splits = load_text_dataset("rotten_tomatoes", max_train=args.max_train,
                               max_eval=args.max_eval, seed=args.seed)
    model, tokenizer = load_text_model(args.model, splits.num_labels, seed=args.seed)
    train = Encoded(tokenizer, splits.train_texts, splits.train_labels, args.max_length)
    test = Encoded(tokenizer, splits.test_texts, splits.test_labels, args.max_length)

    # line 1 of 2: wrap the target layers (everything else frozen, the classifier trained)
    rank = args.rank or (4 if args.model == "tiny-bert" else 16)
    config = decaylora.DecayConfig.from_preset(
        args.preset, r=rank, target_modules=default_text_targets(model),
        modules_to_save=default_modules_to_save(model), seed=args.seed)
    decaylora.wrap(model, config)
    s = decaylora.summary(model)
    print(f"wrapped {len(s.wrapped)} layers: {s.trainable:,} of {s.total:,} parameters trainable")

    with tempfile.TemporaryDirectory() as scratch:  # the Trainer saves nothing here
        targs = TrainingArguments(
            output_dir=scratch, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128, learning_rate=args.lr, weight_decay=0.01,
            warmup_steps=max(1, args.steps // 16), logging_steps=max(1, args.steps // 5),
            save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
            seed=args.seed, disable_tqdm=True, dataloader_num_workers=0,
        )
        # line 2 of 2: the callback drives d (and the noise) from global_step / max_steps
        trainer = Trainer(model=model, args=targs, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          callbacks=[DecayLoraCallback()])
        trainer.train()
        d = [layer.d for _, layer in decaylora.decay_layers(model)]
        print(f"after training: d = {max(d):g} in every wrapped layer")
        with decaylora.as_exported(model):
            acc_view = accuracy(trainer, test)

        # delete the frozen weights, save, reload into a fresh dense skeleton
        decaylora.compress(model)
        out = decaylora.save_compressed(model, args.out)
        tokenizer.save_pretrained(out)
        model.config.save_pretrained(out)
        skeleton = AutoModelForSequenceClassification.from_config(model.config)
        fresh = decaylora.load_compressed(skeleton, out).eval()
        acc = accuracy(Trainer(model=fresh, args=targs,
                               data_collator=DataCollatorWithPadding(tokenizer)), test)

    n_params = sum(p.numel() for p in fresh.parameters())
    print(f"test accuracy {acc:.4f} (W-free view before compress {acc_view:.4f}, majority "
          f"class {splits.majority_baseline:.3f}); compressed model: {n_params:,} parameters, "
          f"saved to {out} ({time.time() - t0:.0f} s)")
    return 0 if acc == acc_view else 1


if __name__ == "__main__":
    raise SystemExit(main())
