"""The ``opcod`` command line.

Core commands live here: ``opcod train`` (headless run: events.jsonl, checkpoints, summary.json) and
``opcod data inspect``. Other packages add commands (the web app adds ``serve``, ``worker``,
``demo``) through the ``opcod.commands`` entry-point group, so the core never imports them: each
entry point is a callable ``register(subparsers)`` that adds a sub-parser with ``func`` set.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import ValidationError

from opcod_core.config import RunConfig, format_validation_error, preset, preset_names
from opcod_core.dotted import set_path
from opcod_core.paths import default_cache_dir  # noqa: F401  (re-exported for the app CLI)


def _parse_set(pairs: list[str]) -> dict:
    """``--set rollout.n=4`` -> nested overrides; values parsed as JSON when possible."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set {pair!r}: expected key.path=value")
        key, raw = pair.split("=", 1)
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        set_path(out, key, val)
    return out


def load_config(args) -> RunConfig:
    overrides = _parse_set(args.set or [])
    for field in ("backend", "executor", "seed"):
        if getattr(args, field, None) is not None:
            overrides[field] = getattr(args, field)
    if args.preset:
        return preset(args.preset, overrides)
    return RunConfig.from_file(args.config).replace(overrides) if overrides else RunConfig.from_file(args.config)


def _train_config(args, saved: Path) -> RunConfig | None:
    """The run's config (a resumed run's saved one unless a new one is given); None after printing why
    the config is invalid."""
    try:
        if args.resume and saved.exists() and not (args.preset or args.config):
            return RunConfig.from_json(saved.read_text())
        if not (args.preset or args.config):
            raise SystemExit("opcod train: give --preset NAME or a CONFIG file")
        return load_config(args)
    except ValidationError as err:
        print("invalid config:\n  " + "\n  ".join(format_validation_error(err)), file=sys.stderr)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"invalid config: {err}", file=sys.stderr)
    return None


def earlier_run(out: Path) -> str:
    """What an earlier run left in ``out`` ("" when nothing): recorded events and checkpoints."""
    from opcod_core.checkpoint import checkpoint_root

    found = []
    events = out / "events.jsonl"
    if events.is_file() and events.stat().st_size > 0:
        found.append("events.jsonl")
    root = checkpoint_root(out)
    if root.is_dir() and any(not d.name.startswith(".") for d in root.iterdir()):
        found.append("checkpoints")
    return " and ".join(found)


def cmd_train(args) -> int:
    from opcod_core.observer import JSONLObserver
    from opcod_core.progress import ProgressReporter, print_summary
    from opcod_core.trainer import Trainer

    out = Path(args.out)
    saved = out / "config.json"
    config = _train_config(args, saved)
    if config is None:
        return 2
    earlier = earlier_run(out)
    if earlier and not (args.resume or args.overwrite):
        print(f"--out {out} holds an earlier run ({earlier}): continue it with --resume, replace it with --overwrite, "
              "or choose another --out", file=sys.stderr)
        return 2
    if args.resume and saved.exists() and RunConfig.from_json(saved.read_text()) != config:
        print(f"--resume: {saved} holds a different config; use another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(config.to_json())
    observer = JSONLObserver(out / "events.jsonl")
    from opcod_core.checkpoint import latest_checkpoint, load_state

    ckpt = latest_checkpoint(out) if args.resume else None
    if ckpt is not None:
        observer.truncate_to(load_state(ckpt)["events_written"] + 1)
    elif observer.count:
        observer.truncate_to(0)
        if not args.resume:
            import shutil
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    reporter = ProgressReporter(config, enabled=not args.quiet)
    aliases = dict(a.split("=", 1) for a in (args.alias or []))
    with reporter:
        trainer = Trainer(config, out, observer=reporter.wrap(observer), cache_dir=args.cache_dir or default_cache_dir(),
                          aliases=aliases, progress=reporter.on_progress)
        try:
            result = trainer.run(resume=args.resume)
        finally:
            trainer.close()
    observer.close()
    if result.summary is not None:
        (out / "summary.json").write_text(json.dumps(result.summary, indent=2))
        print_summary(result.summary)
    print(f"run {result.status}: {out}")
    return 0 if result.status == "finished" else 3


def cmd_data_inspect(args) -> int:
    from opcod_core.data.errors import DataFormatError
    from opcod_core.data.inspect import format_report, inspect_path

    try:
        report = inspect_path(args.path, fmt=args.format)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 1 if getattr(report, "errors", None) else 0


def cmd_presets(args) -> int:
    for name in preset_names():
        print(name if not args.show else f"# {name}\n{preset(name).to_yaml()}")
    return 0


def cmd_export_model(args) -> int:
    from opcod_core.export_model import ExportError, export_model

    try:
        dest = export_model(args.run, args.checkpoint, args.student, args.dir, overwrite=args.overwrite)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.student} to {dest} (AutoModelForCausalLM.from_pretrained({str(dest)!r}))")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="opcod", description="On-Policy Co-Distillation (OPCoD) Studio")
    sub = ap.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="run OPCoD headless (events.jsonl, checkpoints, summary.json)")
    tr.add_argument("config", nargs="?", help="run config file (YAML or JSON)")
    tr.add_argument("--preset", choices=preset_names())
    tr.add_argument("--out", required=True, help="output directory")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    tr.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out (its events and "
                    "checkpoints are deleted); without it or --resume, a non-empty --out is refused")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. rollout.n=4")
    tr.add_argument("--backend", choices=["transformers", "vllm"])
    tr.add_argument("--executor", choices=["local", "ray"])
    tr.add_argument("--seed", type=int)
    tr.add_argument("--cache-dir", type=Path, help="warm-up and model cache (default ~/.cache/opcod)")
    tr.add_argument("--alias", action="append", metavar="NAME=PATH", help="map a model name to a local directory")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    da = sub.add_parser("data", help="dataset tools")
    dsub = da.add_subparsers(dest="data_command", required=True)
    ins = dsub.add_parser("inspect", help="counts per domain and split, and every malformed record")
    ins.add_argument("path")
    ins.add_argument("--format", choices=["sciknoweval", "jsonl", "csv", "mmlu"], default=None)
    ins.set_defaults(func=cmd_data_inspect)

    ex = sub.add_parser("export-model", help="a student at a checkpoint as a plain transformers directory")
    ex.add_argument("run", help="the run's output directory (opcod train --out; a served run: <data dir>/runs/<id>)")
    ex.add_argument("checkpoint", help="checkpoint tag, 'latest', or a checkpoint directory")
    ex.add_argument("student", help="student name")
    ex.add_argument("dir", help="destination directory")
    ex.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    ex.set_defaults(func=cmd_export_model)

    pr = sub.add_parser("presets", help="list presets")
    pr.add_argument("--show", action="store_true", help="print each preset's full config")
    pr.set_defaults(func=cmd_presets)

    from opcod_core.bench.cli import register as register_bench  # `opcod bench fidelity`
    register_bench(sub)

    for ep in entry_points(group="opcod.commands"):
        try:
            register = ep.load()
        except ImportError as err:  # a plugin whose dependencies are missing must not break `opcod train`
            print(f"opcod: command '{ep.name}' unavailable: {err}", file=sys.stderr)
            continue
        register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
