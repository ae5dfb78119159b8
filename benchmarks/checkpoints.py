"""Checkpoints: seconds and bytes per checkpoint, and their share of the training step's time; and the
whole OPCoD step of the same run, phase by phase.

    python benchmarks/checkpoints.py [--presets demo,tiny] [--rounds R] [--steps N] [--threads 2]
                                     [--cache-dir DIR] [--no-record]

For each preset: a run of ``--rounds`` rounds x ``--steps`` steps per direction (default: the preset's own
schedule, so the first checkpoint's full write is spread over as many steps as in a real run), the
preset otherwise unchanged (its ``checkpoint_every``; a checkpoint after every gate and evaluation), in a temporary directory, with every
``Trainer.save_checkpoint`` timed. Prints one JSON object with, per preset: the checkpoints written, the
seconds per checkpoint (median and max), the bytes each added to the disk (files not hard-linked from an
earlier checkpoint; median and max) beside its apparent size, the median training step (the
``time/step`` metric) and the checkpoints' share: their seconds over the steps' seconds in the same run;
and the step's phases (medians of the ``time/*`` metrics: rollout, feedback, train, step). Appends a line
per preset to the "Checkpoints" and the "Whole OPCoD step" sections of docs/benchmarks.md. The demo preset needs its offline SmolLM2 (prepared
under ``--cache-dir`` on first use, as ``make run`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record import machine, record  # noqa: E402


def _files(root: Path) -> dict[tuple[int, int], int]:
    """(device, inode) -> size of every file under ``root``."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            out[(st.st_dev, st.st_ino)] = st.st_size
    return out


def measure_preset(preset: str, steps: int | None, cache_dir: Path, workdir: Path, rounds: int | None = 1) -> dict:
    from opcod_core.checkpoint import checkpoint_root
    from opcod_core.config import RunConfig
    from opcod_core.observer import CollectingObserver
    from opcod_core.presets import PRESETS
    from opcod_core.trainer import Trainer

    raw = PRESETS[preset]()
    schedule = raw.get("schedule", {})
    raw["schedule"] = {**schedule, "rounds": rounds or schedule.get("rounds", 1),
                       "steps_per_direction": steps or schedule.get("steps_per_direction", 2)}
    config = RunConfig.from_dict(raw)
    out = workdir / preset
    observer = CollectingObserver()
    trainer = Trainer(config, out, observer=observer, cache_dir=cache_dir)
    saves: list[dict] = []
    save = trainer.save_checkpoint

    def timed_save(permanent: bool = False) -> None:
        root = checkpoint_root(out)
        before = _files(root) if root.exists() else {}
        t0 = time.perf_counter()
        save(permanent)
        seconds = time.perf_counter() - t0
        files = _files(trainer.last_checkpoint)
        saves.append({"s": seconds, "apparent": sum(files.values()),
                      "added": sum(size for key, size in files.items() if key not in before)})

    trainer.save_checkpoint = timed_save
    try:
        result = trainer.run()
    finally:
        trainer.close()
    steps = observer.of_type("step")
    step_s = [e.metrics["time/step"] for e in steps if "time/step" in e.metrics]
    if result.status != "finished" or not saves or not step_s:
        raise SystemExit(f"{preset}: the run ended {result.status} with {len(saves)} checkpoints, {len(step_s)} steps")
    total_ckpt, total_steps = sum(s["s"] for s in saves), sum(step_s)
    return {
        "checkpoints": len(saves), "steps": len(step_s), "checkpoint_every": config.checkpoint_every,
        "rounds": config.schedule.rounds,
        "checkpoint_s_median": round(statistics.median(s["s"] for s in saves), 3),
        "checkpoint_s_max": round(max(s["s"] for s in saves), 3),
        "added_mb_median": round(statistics.median(s["added"] for s in saves) / 1e6, 1),
        "added_mb_max": round(max(s["added"] for s in saves) / 1e6, 1),
        "apparent_mb_max": round(max(s["apparent"] for s in saves) / 1e6, 1),
        "step_s_median": round(statistics.median(step_s), 3),
        "checkpoint_share_of_step_time": round(total_ckpt / total_steps, 4),
        "phases": phases(steps),
    }


PHASES = ("time/rollout", "time/feedback", "time/train", "time/weight_sync", "time/step")


def phases(steps: list) -> dict[str, float]:
    """The whole OPCoD step, phase by phase (medians over the run's steps, seconds): the tutee's rollouts,
    the tutor's feedback (and its anchoring), the update (self-teacher with s+f, the divergence, AdamW), and
    for vLLM runs the weight sync; plus rollout tokens per second."""
    out = {}
    for key in PHASES:
        values = [e.metrics[key] for e in steps if isinstance(e.metrics.get(key), (int, float))]
        if values:
            out[key.split("/")[1] + "_s"] = round(statistics.median(values), 3)
    tps = [e.metrics["throughput/rollout_tokens_per_s"] for e in steps
           if isinstance(e.metrics.get("throughput/rollout_tokens_per_s"), (int, float))]
    if tps:
        out["rollout_tokens_per_s"] = round(statistics.median(tps), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="demo,tiny")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default: the preset's)")
    ap.add_argument("--steps", type=int, default=None, help="steps per direction (default: the preset's)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--cache-dir", default=None, help="warm-up and model cache (default: the command line's)")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    import torch

    from opcod_core.paths import default_cache_dir

    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    result: dict = {"machine": machine(), "threads": args.threads, "presets": {}}
    with tempfile.TemporaryDirectory(prefix="opcod-bench-ckpt-") as tmp:
        for preset in args.presets.split(","):
            result["presets"][preset] = measure_preset(preset, args.steps, cache, Path(tmp), args.rounds)
    print(json.dumps(result))
    if not args.no_record:
        cmd = "python benchmarks/checkpoints.py " + " ".join(argv if argv is not None else sys.argv[1:])
        for preset, r in result["presets"].items():
            record("Checkpoints", cmd.strip(),
                   f"{preset}: {r['rounds']} round(s), {r['steps']} steps, checkpoint_every {r['checkpoint_every']}, "
                   f"{r['checkpoints']} checkpoints, {r['checkpoint_s_median']} s each (max "
                   f"{r['checkpoint_s_max']}), {r['added_mb_median']} MB added each (max {r['added_mb_max']}; "
                   f"apparent {r['apparent_mb_max']} MB), step {r['step_s_median']} s, checkpoints "
                   f"{r['checkpoint_share_of_step_time']:.1%} of step time ({args.threads} threads)")
            ph = r["phases"]
            record("Whole OPCoD step", cmd.strip(),
                   f"{preset}, {args.threads} thread(s), medians of {r['steps']} steps: "
                   + ", ".join(f"{k[:-2]} {v} s" for k, v in ph.items() if k.endswith("_s"))
                   + (f", rollout {ph['rollout_tokens_per_s']} tokens/s" if "rollout_tokens_per_s" in ph else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
