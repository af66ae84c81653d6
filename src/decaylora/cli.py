"""``decaylora`` command line: run, compare, plot, export, summary.

Every ``ExperimentConfig`` field is also a flag (``max_train`` -> ``--max-train``); flags override
the YAML given with ``--config``. With no arguments ``decaylora run`` runs the offline default:
MiniLM-L6 on Rotten Tomatoes, rank 16, decay + C, ending W-free.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import os
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, DecayLoraError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from .experiment import ExperimentConfig

    p.add_argument("--config", help="YAML file with experiment settings (flags override it)")
    g = p.add_argument_group("experiment settings (any key of the YAML config)")
    hints = typing.get_type_hints(ExperimentConfig)
    for f in fields(ExperimentConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _type_label(hints[f.name])
        g.add_argument(flag, dest=f"cfg_{f.name}", default=argparse.SUPPRESS, metavar=kind.upper(),
                       help=f"(default: {f.default!r})")
    p.add_argument("--preset", dest="cfg_method", default=argparse.SUPPRESS,
                   help="alias of --method (e.g. notes-a, notes-b)")


def _type_label(hint: Any) -> str:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    names = [getattr(typing.get_origin(a) or a, "__name__", str(a)) for a in args
             if a is not type(None)]
    return "|".join(names)


def _parse_value(name: str, raw: str) -> Any:
    """Flags arrive as strings: parse them as YAML scalars/lists, except for str fields."""
    from .experiment import ExperimentConfig

    hint = typing.get_type_hints(ExperimentConfig)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if raw.lower() in ("none", "null") and type(None) in args:
        return None
    if str in args:
        return raw
    if any((typing.get_origin(a) or a) is list for a in args):
        if raw.startswith("["):
            return yaml.safe_load(raw)
        return [x.strip() for x in raw.split(",") if x.strip()]
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--{name.replace('_', '-')}: cannot parse {raw!r} ({e})") from None


def _config_from_args(args: argparse.Namespace):
    from .experiment import ExperimentConfig

    overrides = {k[4:]: _parse_value(k[4:], v) for k, v in vars(args).items()
                 if k.startswith("cfg_")}
    if getattr(args, "config", None):
        return ExperimentConfig.from_yaml(args.config, **overrides)
    return ExperimentConfig.from_dict(overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import ExperimentConfig, run_experiment

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); pass the "
                              "directory a previous `decaylora run` printed")
        if not (run_dir / "checkpoint").is_dir():
            raise ConfigError(f"{run_dir} has no checkpoint to resume (finished, or stopped "
                              "before the first checkpoint)")
        # flags given with --resume must agree with the saved config (run_experiment names
        # any difference and refuses)
        overrides = {k[4:]: _parse_value(k[4:], v) for k, v in vars(args).items()
                     if k.startswith("cfg_")}
        cfg = ExperimentConfig.from_yaml(run_dir / "config.yaml", **overrides)
        res = run_experiment(cfg, run_dir, resume=True)
    else:
        cfg = _config_from_args(args)
        res = run_experiment(cfg, args.run_dir)
    _print_result(res)
    return 0


def _print_result(res: dict) -> None:
    if "test_acc" not in res:  # a non-main process of a distributed run: it writes nothing
        return
    line = f"\ntest accuracy {res['test_acc']:.4f} (majority class {res['majority_baseline']:.3f})"
    if "export" in res:
        e = res["export"]
        line += (f"; W-free export: {res['params']['deployed']:,} params, reloaded test accuracy "
                 f"{e['reloaded_test_acc']:.4f} ({'matches' if e['matches'] else 'MISMATCH'})"
                 f"\nexported model: {e['dir']}")
    print(line)
    if res.get("stuck_at_chance"):
        print("WARNING: this run was stuck at chance; see report.md for likely causes")


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiment import compare

    cfg = _config_from_args(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, e.g. --seeds 0,1,2; got "
                          f"{args.seeds!r}") from None
    grid = None
    if args.lr_grid:
        try:
            grid = [float(v) for v in args.lr_grid.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--lr-grid must be comma-separated numbers, e.g. --lr-grid "
                              f"1e-4,3e-4,1e-3; got {args.lr_grid!r}") from None
    compare(cfg, methods, seeds, args.out, lr_grid=grid)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import collect, parse_sources

    rows = collect(parse_sources(args.dirs), args.out, reference=args.reference,
                   title=args.title)
    out = Path(args.out)
    print((out / "collect.md").read_text())
    print(f"{len(rows)} rows -> {out / 'collect.md'}, {out / 'collect.json'}, "
          f"{out / 'accuracy_params.png'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "results.json").is_file():
        raise ConfigError(f"{run_dir} has no metrics.jsonl/results.json: not a finished run")
    for p in plot_run(run_dir):
        print(p)
    return 0


def _load_run_model(run_dir: Path):
    """A fresh dense model of a run's architecture (no data needed)."""
    from .experiment import ExperimentConfig

    cfg = ExperimentConfig.from_yaml(run_dir / "config.yaml")
    results = json.loads((run_dir / "results.json").read_text())
    if cfg.task == "text":
        from .models import load_text_model
        model, tok = load_text_model(cfg.model, results["num_labels"])
        return cfg, model, lambda p: (model.config.save_pretrained(p), tok.save_pretrained(p))
    from .models import vgg
    arch = results["data"]["arch"]
    model = vgg(**arch)
    return cfg, model, lambda p: (p / "architecture.json").write_text(json.dumps({"vgg": arch}))


def cmd_export(args: argparse.Namespace) -> int:
    """Re-export a finished run's adapters as a compressed model (or check its export)."""
    import torch

    from .export import compress, load_adapter, load_compressed, save_compressed
    from .injection import as_exported, set_progress

    run_dir = Path(args.run_dir)
    if not (run_dir / "adapter").is_dir():
        raise ConfigError(f"{run_dir} has no adapter/ directory: only finished runs of wrapped "
                          "methods can be exported")
    missing = [f for f in ("config.yaml", "results.json") if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{run_dir} has no {' or '.join(missing)}: not a finished run (resume "
                          "it with `decaylora run --resume RUN_DIR` first)")
    cfg, model, save_extras = _load_run_model(run_dir)
    load_adapter(model, run_dir / "adapter")
    results = json.loads((run_dir / "results.json").read_text())
    set_progress(model, results["steps"], results["steps"])
    model.eval()
    probe = _probe_input(cfg, model)
    with torch.no_grad(), as_exported(model):
        expected = _logits(model, probe)
    compress(model, force=args.force)
    out = Path(args.out or run_dir / "export")
    save_compressed(model, out, extra={"experiment": cfg.to_dict()})
    save_extras(out)
    _, skeleton, _ = _load_run_model(run_dir)
    fresh = load_compressed(skeleton, out).eval()
    with torch.no_grad():
        err = float((_logits(fresh, probe) - expected).abs().max())
    print(f"exported {out} ({sum(p.numel() for p in fresh.parameters()):,} parameters); "
          f"max |logit difference| vs the W-free view on a probe batch: {err:.2e}")
    return 0 if err < 1e-4 else 1


def _probe_input(cfg, model):
    import torch
    g = torch.Generator().manual_seed(0)
    if cfg.task == "text":
        vocab = model.config.vocab_size
        return {"input_ids": torch.randint(0, vocab, (4, 16), generator=g),
                "attention_mask": torch.ones(4, 16, dtype=torch.long)}
    c = model.features[0].in_channels if hasattr(model, "features") else 1
    return torch.randn(4, c, 28, 28, generator=g)


def _logits(model, probe):
    out = model(**probe) if isinstance(probe, dict) else model(probe)
    return out.logits if hasattr(out, "logits") else out


def cmd_summary(args: argparse.Namespace) -> int:
    from .experiment import apply_method
    from .inspection import summary

    cfg = _config_from_args(args)
    model, targets, head = _model_only(cfg)

    class _T:  # the bits of a Task that apply_method needs
        pass
    t = _T()
    t.model, t.targets, t.head = model, targets, head
    apply_method(t, cfg)  # type: ignore[arg-type]
    s = summary(model)
    print(s.table())
    if args.json:
        Path(args.json).write_text(json.dumps(s.to_dict(), indent=2))
    return 0


def _model_only(cfg):
    if cfg.task == "text":
        from .models import default_text_targets, load_text_model
        model, _ = load_text_model(cfg.model, 2)
        return model, cfg.targets or default_text_targets(model), cfg.modules_to_save or [
            "classifier"]
    from .models import default_vision_targets, vgg
    model = vgg(cfg.model, num_classes=10, in_channels=1, width=cfg.width, image_size=28)
    return model, cfg.targets or default_vision_targets(model), cfg.modules_to_save or [
        "classifier"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="decaylora",
        description="Fine-tune and compress in one run: decay pretrained layers into low-rank "
                    "adapters, then delete the frozen weights.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="run one experiment (no arguments: the offline default)")
    _add_config_flags(r)
    r.add_argument("--run-dir", help="output directory (default: OUTPUT_DIR/NAME-METHOD-...)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="several methods side by side, same data/steps/seed")
    _add_config_flags(c)
    c.add_argument("--methods", default="full,lora,svd,decay,decay+noise,decay+noise+c,"
                   "notes-a,head,default", help="comma-separated methods")
    c.add_argument("--seeds", help="comma-separated seeds (default: --seed)")
    c.add_argument("--out", help="output directory")
    c.add_argument("--lr-grid", help="comma-separated learning rates: every method runs at each "
                   "and is reported at the one with the best validation accuracy")
    c.set_defaults(func=cmd_compare)
    co = sub.add_parser("collect", help="several compare outputs in one table and one "
                        "accuracy-vs-size figure")
    co.add_argument("dirs", nargs="+", metavar="DIR[=LABEL]",
                    help="compare output directories (label: default the directory name)")
    co.add_argument("--out", required=True, help="output directory")
    co.add_argument("--reference", help="row label or method to measure Δ against "
                    "(default: the first 'full' row)")
    co.add_argument("--title", help="title of the table and figure")
    co.set_defaults(func=cmd_collect)
    pl = sub.add_parser("plot", help="(re)draw a run's figures")
    pl.add_argument("run_dir")
    pl.set_defaults(func=cmd_plot)
    e = sub.add_parser("export", help="export a finished run's adapters as a W-free model")
    e.add_argument("run_dir")
    e.add_argument("--out", help="output directory (default: RUN_DIR/export)")
    e.add_argument("--force", action="store_true", help="compress even if d > 0")
    e.set_defaults(func=cmd_export)
    s = sub.add_parser("summary", help="parameter/MAC table of a wrapped model, no training")
    _add_config_flags(s)
    s.add_argument("--json", help="also write the table as JSON to this file")
    s.set_defaults(func=cmd_summary)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if unknown:
        print(f"decaylora: error: {_unknown_args(parser, args.command, unknown)}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except DecayLoraError as e:
        print(f"decaylora: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _OS_HINTS:  # not an environment problem: keep the traceback
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"decaylora: error: {e.strerror or e}{where}; {_OS_HINTS[e.errno]}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\ndecaylora: {e or 'interrupted'}", file=sys.stderr)
        return 130


#: Operating-system errors that come from the machine, not from decaylora, with what to do.
_OS_HINTS = {
    errno.ENOSPC: "free disk space or write the run elsewhere (--run-dir / --output-dir)",
    errno.EDQUOT: "free disk space or write the run elsewhere (--run-dir / --output-dir)",
    errno.EACCES: "choose a directory you can write to (--run-dir / --output-dir)",
    errno.EPERM: "choose a directory you can write to (--run-dir / --output-dir)",
    errno.EROFS: "the file system is read-only; write the run elsewhere (--run-dir)",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
}


def _unknown_args(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> str:
    """Name the first unknown argument of ``decaylora COMMAND`` and suggest the close option."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for a in sub.choices[command]._actions for o in a.option_strings
               if o.startswith("--")]
    flag = unknown[0].split("=", 1)[0]
    if not flag.startswith("-"):
        return (f"unexpected argument {unknown[0]!r} for `decaylora {command}`; options take "
                f"the form --KEY VALUE (`decaylora {command} --help` lists them)")
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"unknown option {flag}{hint} for `decaylora {command}`; "
            f"`decaylora {command} --help` lists the options")


if __name__ == "__main__":
    sys.exit(main())
