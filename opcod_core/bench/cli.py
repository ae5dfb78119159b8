"""``opcod bench fidelity``: runs the fidelity benchmark and writes its report (``opcod bench drift`` is
registered from ``opcod_core.bench.drift_cli``, ``opcod bench students`` from
``opcod_core.bench.students_cli``).

Full mode (default): the ``sciworld`` students for each pair, seeds 0-2, all six methods, the preset's
schedule. ``--quick``: one seed, R × K = 1 × 2, small batches and evaluations, and students warmed up for
``--quick-warmup`` steps only (a pipeline check that CI can afford: it says nothing about effect sizes).
``--mode trio``: the three v3 specialists co-distilled together against the three v3 pairs, with a
poisoned variant under ``--poison TUTOR`` (``opcod_core.bench.trio``); ``--quick`` works the same way there.
Each results JSON names its kind (``fidelity-pairs`` or ``fidelity-trio``), which ``opcod bench readme``
reads to put the report's generated paragraph between that kind's markers in the README
(``opcod_core.bench.readme_sync``). ``fidelity``, ``students`` and ``drift`` pin the CPU float path before
torch loads (``--float-path``, ``opcod_core.bench.floatpath``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import get_args

from opcod_core.bench.drift_cli import register_drift
from opcod_core.bench.students_cli import register_students
from opcod_core.bench.floatpath import add_float_path, machine_note
from opcod_core.config import LossConfig, deep_merge


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        if not a or not b or a == b:
            raise SystemExit(f"--pairs: expected A:B[,C:D], got {part!r}")
        out.append((a.strip(), b.strip()))
    return out


def _partial(text: str) -> tuple[float, float]:
    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"--partial: expected two numbers S1,S2 between 0 and 1, got {text!r}") from None
    if len(shares) != 2 or not all(0.0 <= x <= 1.0 for x in shares):
        raise SystemExit(f"--partial: expected two numbers S1,S2 between 0 and 1, got {text!r}")
    return shares  # type: ignore[return-value]


TRIO_OUT = "docs/results/n-peers-trio.md"
TRIO_ONLY = ("poison", "poison_from", "trust_threshold", "quarantine_within", "trio_gating", "trust_recent",
             "replay_recent")
PAIRS_ONLY = ("pairs", "methods", "partial", "select_lr", "select_kl_anchor", "select_tau", "select_methods",
              "baseline_seeds", "vary_students")


def _student_overrides(args) -> dict:
    """Every student's overrides: in quick mode a short warm-up and no build check (students warmed up for
    a few steps cannot meet one)."""
    if not args.quick:
        return {}
    return {"warmup_sft_steps": args.quick_warmup, "warmup_decay_steps": args.quick_warmup, "warmup_expect": None,
            "warmup_self_teacher_tolerance": None}


def _overrides(args, students: int = 2) -> dict:
    """The run-config overrides the flags ask for (quick mode, steps, evaluation size, lr, KL anchor, divergence); with ``students``
    0 the per-student ones are left out (``_student_overrides``)."""
    from opcod_core.bench.fidelity import QUICK_OVERRIDES

    overrides: dict = {}
    if args.quick:
        overrides = deep_merge(QUICK_OVERRIDES, {"students": [_student_overrides(args)] * students} if students else {})
    if args.steps is not None:
        overrides = deep_merge(overrides, {"schedule": {"steps_per_direction": args.steps}})
    if args.eval_k is not None or args.eval_items is not None:
        ev = {k: v for k, v in (("k", args.eval_k), ("max_items", args.eval_items)) if v is not None}
        overrides = deep_merge(overrides, {"eval": ev})
    if args.lr is not None:
        overrides = deep_merge(overrides, {"optim": {"lr": args.lr}})
    if args.kl_anchor is not None:
        overrides = deep_merge(overrides, {"loss": {"kl_anchor": args.kl_anchor}})
    if args.divergence is not None:
        overrides = deep_merge(overrides, {"loss": {"divergence": args.divergence}})
    return overrides


def _plan(args):
    """The ``BenchPlan`` of the flags: methods, seeds per method, pairs of the chosen world."""
    from opcod_core.bench.fidelity import METHODS, PRIMARY_METHODS, BenchPlan
    from opcod_core.presets import WORLD3_PAIRS

    methods = args.methods.split(",") if args.methods else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {list(METHODS)}")
    seeds = [0] if args.quick and args.seeds is None else list(range(args.seeds if args.seeds is not None else 3))
    by_method = {}
    if args.baseline_seeds is not None:   # the secondary baselines at fewer seeds than opcod, never, always
        by_method = {m: list(range(args.baseline_seeds)) for m in methods if m not in PRIMARY_METHODS}
    world = args.world or "v2"
    pairs = _pairs(args.pairs) if args.pairs else (list(WORLD3_PAIRS) if world == "v3" else
                                                   [("chemistry", "physics")])
    return BenchPlan(pairs=pairs, seeds=seeds, methods=methods, overrides=_overrides(args),
                     student_seed=args.student_seed, vary_students=args.vary_students,
                     partial=_partial(args.partial) if args.partial else None,
                     jobs=args.jobs or 1, threads=args.threads or 1, world=world, seeds_by_method=by_method,
                     results_dir=Path(args.results_dir) if args.results_dir else None,
                     select_seeds=list(range(args.select_seeds)))


def _report_only(out: Path) -> int:
    import json

    from opcod_core.bench.aggregate import aggregate
    from opcod_core.bench.report import save_results
    from opcod_core.bench.primary import primary_comparisons
    from opcod_core.bench.report import write_report
    from opcod_core.bench.summary import PAIRS_KIND

    results = json.loads(out.with_suffix(".json").read_text())
    results.setdefault("kind", PAIRS_KIND)
    for pr in results["pairs"].values():
        pr["aggregate"] = aggregate(pr["runs"], pr["students"], pr["domains"])
        if "primary" in pr:
            pr["primary"] = primary_comparisons(pr["runs"], pr["students"], pr["strong"], pr["domains"])
    save_results(results, out.with_suffix(".json"))
    print(f"report: {write_report(results, out, command=results['command'], machine=results['machine'])}")
    return 0


@contextlib.contextmanager
def _log_to(path: Path):
    """A logger writing timed lines to stderr and to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with path.open("w") as log_fh:
        def log(msg: str) -> None:
            line = f"[{time.perf_counter() - t0:7.1f}s] {msg}"
            print(line, file=sys.stderr, flush=True)
            log_fh.write(line + "\n")
            log_fh.flush()

        yield log


def _command_and_machine(args, jobs: int, threads: int) -> tuple[str, str | None]:
    import torch

    command = "opcod " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    machine = (f"{platform.machine()} Linux, {os.cpu_count()} CPU cores, {jobs} worker process(es) × "
               f"{threads} torch thread(s), torch {torch.__version__}, {machine_note()}, no GPU"
               if not torch.cuda.is_available() else None)
    return command, machine


def _check_mode_flags(args) -> None:
    """A flag of the other mode is an error naming it (defaults are None, so only given flags count)."""
    wrong = TRIO_ONLY if args.mode == "pairs" else PAIRS_ONLY
    given = [f"--{name.replace('_', '-')}" for name in wrong if getattr(args, name) not in (None, False)]
    if given:
        raise SystemExit(f"{given[0]}: not an option of --mode {args.mode}")
    if args.mode == "trio" and args.world == "v2":
        raise SystemExit("--world: --mode trio runs the v3 specialists (sciworld3); leave --world out or pass v3")
    for name in ("trust_recent", "replay_recent"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: expected a whole number of opportunities >= 1, "
                             f"got {getattr(args, name)}")
    if args.trust_recent is not None and args.poison is None:
        raise SystemExit("--trust-recent: sets the poisoned runs' trust.recent; give --poison too")


def cmd_fidelity(args) -> int:
    import torch

    from opcod_core.bench.fidelity import run_benchmark
    from opcod_core.bench.report import save_results
    from opcod_core.bench.report import write_report
    from opcod_core.bench.summary import PAIRS_KIND

    if args.threads:
        torch.set_num_threads(args.threads)
    _check_mode_flags(args)
    if args.mode == "trio":
        return cmd_trio(args)
    plan = _plan(args)
    out = Path(args.out or "docs/results/fidelity.md")
    if args.report_only:  # re-aggregate and re-write from the saved results (e.g. after editing the notes)
        return _report_only(out)
    with _log_to(out.with_suffix(".log")) as log:
        grid = [float(x) for x in args.select_lr.split(",")] if args.select_lr else None
        results = run_benchmark(plan, Path(args.cache_dir), Path(args.work_dir), log=log, lr_grid=grid,
                                lr_methods=args.select_methods.split(",") if args.select_methods else None,
                                world_items=8 if args.quick else (None if plan.world == "v3" else 48),
                                tau_grid=[float(x) for x in args.select_tau.split(",")] if args.select_tau else None,
                                anchor_grid=_anchor_grid(args))
    command, machine = _command_and_machine(args, plan.jobs, plan.threads)
    results.update(kind=PAIRS_KIND, command=command, machine=machine)
    save_results(results, out.with_suffix(".json"))
    path = write_report(results, out, command=command, machine=machine)
    print(f"report: {path}")
    return 0


def _anchor_grid(args) -> list[float] | None:
    """``--select-kl-anchor``: the KL-anchor coefficients crossed with ``--select-lr`` (None: not selected)."""
    if not args.select_kl_anchor:
        return None
    if not args.select_lr:
        raise SystemExit("--select-kl-anchor: needs --select-lr (the anchor is chosen together with the rate)")
    if args.kl_anchor is not None:
        raise SystemExit("--select-kl-anchor: conflicts with --kl-anchor (one fixes the anchor, the other selects it)")
    try:
        grid = [float(x) for x in args.select_kl_anchor.split(",")]
    except ValueError:
        raise SystemExit(f"--select-kl-anchor: expected comma-separated numbers, got {args.select_kl_anchor!r}") from None
    if any(a < 0 for a in grid):
        raise SystemExit(f"--select-kl-anchor: coefficients must be >= 0, got {grid}")
    return grid


def _trio_plan(args):
    from opcod_core.bench.trio import TrioPlan

    seeds = [0] if args.quick and args.seeds is None else list(range(args.seeds if args.seeds is not None else 3))
    return TrioPlan(seeds=seeds, overrides=_overrides(args, students=0), student_overrides=_student_overrides(args),
                    student_seed=args.student_seed, jobs=args.jobs or 1, threads=args.threads or 1,
                    results_dir=Path(args.results_dir) if args.results_dir else None,
                    gating=args.trio_gating or "cognizance", poison=args.poison, poison_from=args.poison_from,
                    threshold=args.trust_threshold, quarantine_within=args.quarantine_within, quick=args.quick,
                    recent=args.trust_recent)


def cmd_trio(args) -> int:
    """``--mode trio``: run (or, with ``--report-only``, re-analyse) and write the trio report."""
    from opcod_core.bench.report import save_results
    from opcod_core.bench.summary import TRIO_KIND
    from opcod_core.bench.trio import poison_settings, run_trio_benchmark, trio_config
    from opcod_core.bench.trio_analysis import analyse
    from opcod_core.bench.trio_report import write_trio_report

    out = Path(args.out or TRIO_OUT)
    if args.report_only:
        results = json.loads(out.with_suffix(".json").read_text())
        results["replay_recent"] = args.replay_recent or results.get("replay_recent")
    else:
        plan = _trio_plan(args)
        if plan.poison is not None:   # checked before any build: a bad --poison / --poison-from names its flag
            try:
                poison_settings(plan, trio_config(plan))
            except ValueError as exc:
                flag, _, why = str(exc).partition(":")
                raise SystemExit(f"--{flag.replace('_', '-')}:{why}") from None
        with _log_to(out.with_suffix(".log")) as log:
            results = run_trio_benchmark(plan, Path(args.cache_dir), Path(args.work_dir), log=log)
        results.update(zip(("command", "machine"), _command_and_machine(args, plan.jobs, plan.threads)))
        results["replay_recent"] = args.replay_recent
    results["kind"] = TRIO_KIND
    results["analysis"] = analyse(results)
    save_results(results, out.with_suffix(".json"))
    print(f"report: {write_trio_report(results, out, command=results['command'], machine=results['machine'])}")
    return 0


def cmd_readme(args) -> int:
    from opcod_core.bench.readme_sync import run

    return run(args.report, args.readme, args.check)


def register(sub) -> None:
    from opcod_core.paths import default_cache_dir

    bench = sub.add_parser("bench", help="benchmarks of the algorithm (science-world fidelity)")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    _register_fidelity(bsub, default_cache_dir)
    register_students(bsub)
    register_drift(bsub, default_cache_dir)
    _register_readme(bsub)
    for name in ("fidelity", "students", "drift"):
        add_float_path(bsub.choices[name])


def _register_readme(bsub) -> None:
    rd = bsub.add_parser("readme", help="put each report's generated result paragraph into the README between "
                         "its <!-- result:KIND:BEGIN/END --> markers")
    rd.add_argument("--report", action="append", required=True, metavar="PATH.json",
                    help="a report's results JSON (pairs or trio; repeat for both)")
    rd.add_argument("--readme", default="README.md", help="the README to update (default README.md)")
    rd.add_argument("--check", action="store_true", help="write nothing; exit 1 when the README differs")
    rd.set_defaults(func=cmd_readme)


def _register_fidelity(bsub, default_cache_dir) -> None:
    fi = bsub.add_parser("fidelity", help="OPCoD vs never/always/domain-selective/GRPO/one-way in the science world")
    fi.add_argument("--mode", choices=("pairs", "trio"), default="pairs", help="pairs: the methods on domain pairs; "
                    "trio: the three v3 specialists together against the three v3 pairs (opcod_core.bench.trio)")
    fi.add_argument("--out", default=None, help="report path (.md; .json, .log and .png files are written next to "
                    f"it; default docs/results/fidelity.md, with --mode trio {TRIO_OUT})")
    fi.add_argument("--world", choices=("v2", "v3"), default=None, help="science world: v2 (default; options listed, two "
                    "students; v1 is v2 with --partial 0,0) or v3 (numeric answers, three specialists, corrupted "
                    "fact table for incognizant tutors)")
    fi.add_argument("--pairs", default=None, help="domain pairs A:B[,C:D] (chemistry, physics, electricity; "
                    "default: chemistry:physics in v2, the three pairs of the knowledge ladder in v3)")
    fi.add_argument("--seeds", type=int, default=None, help="number of training seeds (default 3; quick: 1)")
    fi.add_argument("--baseline-seeds", type=int, default=None, help="seeds of the secondary baselines "
                    "(domain_selective, grpo, one_way); default: --seeds")
    fi.add_argument("--results-dir", default=None, help="result cache of the runs: a run found there (same "
                    "config, seed, students and code) is read, not run again, so an interrupted benchmark "
                    "continues where it stopped")
    fi.add_argument("--select-seeds", type=int, default=1, help="training seeds of each lr / tau candidate")
    fi.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    _register_training(fi)
    fi.add_argument("--quick", action="store_true", help="one seed, 1 x 2 steps, short warm-up: pipeline check")
    fi.add_argument("--quick-warmup", type=int, default=30, help="warm-up steps of the quick mode's students")
    fi.add_argument("--student-seed", type=int, default=0, help="seed of the students' build")
    fi.add_argument("--partial", default=None, metavar="S1,S2",
                    help="share of the other domain's knowledge units each student learns (default: the "
                    "sciworld preset's 0.9,0; 0,0 = the two-sided split: hint use only)")
    fi.add_argument("--vary-students", action="store_true", help="build a new student pair for every seed")
    fi.add_argument("--report-only", action="store_true", help="re-write the report from its saved .json")
    fi.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    fi.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4),
                    help="runs in parallel worker processes (default: the CPU count, at most 4; results do "
                    "not depend on it)")
    fi.add_argument("--cache-dir", default=str(default_cache_dir()), help="warm-up cache (default ~/.cache/opcod)")
    fi.add_argument("--work-dir", default="/tmp/opcod-bench", help="scratch directory of the runs")
    _register_trio(fi)
    fi.set_defaults(func=cmd_fidelity)


def _register_training(fi) -> None:
    """The flags that set what every run trains with, and the validation selection of the rate (and anchor, τ)."""
    fi.add_argument("--steps", type=int, default=None, help="K, steps per direction (default: the preset's)")
    fi.add_argument("--eval-k", type=int, default=None, help="samples per test question (default: the preset's)")
    fi.add_argument("--eval-items", type=int, default=None,
                    help="test questions per domain (default: the preset's; all when larger than the split)")
    fi.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    fi.add_argument("--kl-anchor", type=float, default=None, metavar="COEF", help="loss.kl_anchor of every run, "
                    "selection included: KL to the run's initial weights against forgetting (docs/results/drift-v3.md; "
                    "default: the preset's, 0)")
    fi.add_argument("--divergence", choices=get_args(LossConfig.model_fields["divergence"].annotation), default=None,
                    help="loss.divergence of every run, selection included (default: the preset's, jsd): a JSD "
                    "saturates at log 2 where the student is confidently wrong, so its gradient vanishes there "
                    "(docs/results/divergence-v3.md)")
    fi.add_argument("--select-lr", default=None, metavar="LR1,LR2,...",
                    help="choose the learning rate on the validation split from this grid first")
    fi.add_argument("--select-kl-anchor", default=None, metavar="A1,A2,...",
                    help="with --select-lr: choose loss.kl_anchor together with the rate, over every (rate, anchor) "
                    "of the two grids (0 = no anchor)")
    fi.add_argument("--select-tau", default=None, metavar="TAU1,TAU2,...",
                    help="then choose OPCoD's tau on the validation split from this grid (ties: the first)")
    fi.add_argument("--select-methods", default=None, help="methods scored in the lr selection (default: all)")


def _register_trio(fi) -> None:
    fi.add_argument("--trio-gating", choices=("cognizance", "always"), default=None, help="trio: who may tutor "
                    "(default cognizance: the preset's gate, as in the pairs; always: an ablation in which routing "
                    "alone picks the tutor)")
    fi.add_argument("--poison", default=None, metavar="TUTOR", help="trio: also run the trio with TUTOR's feedback "
                    "corrupted (benchmark fault faults.poison), with trust.auto_quarantine on and off")
    fi.add_argument("--poison-from", type=int, default=None, metavar="STEP",
                    help="trio: first poisoned global step (default: halfway through the trio's steps)")
    fi.add_argument("--trust-threshold", type=float, default=None, help="trio: break-rate threshold of the "
                    "automatic quarantine in the poisoned runs (default: the config's, 0.5)")
    fi.add_argument("--quarantine-within", type=int, default=None, metavar="STEPS", help="trio: the stated bound, "
                    "in global steps after the poison, within which auto-quarantine must catch the tutor (default 2K)")
    fi.add_argument("--trust-recent", type=int, default=None, metavar="N", help="trio: trust.recent of the poisoned "
                    "runs (the automatic rule also judges each tutor's last N opportunities per domain; default off)")
    fi.add_argument("--replay-recent", type=int, default=None, metavar="N", help="trio: the report also replays "
                    "every run without a quarantine under trust.recent = N (exact up to its first quarantine; "
                    "--report-only keeps the results' value unless given)")
