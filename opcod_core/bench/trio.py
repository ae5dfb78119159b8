"""``opcod bench fidelity --mode trio``: the three version-3 specialists co-distilled together against the three
pairwise runs, and a poisoned variant that tests tutor trust (issue 17, "Show it works").

Runs, per training seed (the fidelity protocol's seeds; every run starts from the same cached students):

* ``trio``: chem, phys and elec in one run on the three domains (preset ``sciworld3-trio``,
  ``presets.world3_trio``: the pairs' schedule and settings), each question routed to the cognizant peer with
  the highest validation score on its domain (routing ``best``, ``opcod_core.step_routing``);
* ``pair-A-B`` for each pair of ``presets.WORLD3_PAIRS``: the fidelity benchmark's ``opcod`` run of that
  pair (``fidelity.pair_config(world="v3")``, cognizance gating at the config's τ);
* with ``--poison TUTOR``: ``trio-poison-on`` and ``trio-poison-off``, the trio with the benchmark fault
  ``faults.poison`` (TUTOR's feedback replaced by its corrupted hint from ``--poison-from``, default
  halfway: global step ⌊3·R·K / 2⌋) and ``trust.auto_quarantine`` on and off (threshold
  ``--trust-threshold``, default the config's 0.5).

Budget matching. A run is R rounds; each round has one direction per student in which it is the tutee for
K optimizer steps (``opcod_core.tasks``: N·K steps per round for N students). So in the trio and in every
pair each student receives exactly R·K updates on the same batch size (B prompts × n rollouts), learning
rate and evaluation; the trio run has 3·R·K steps in all and a pair 2·R·K. What differs is who may tutor
whom: in a pair the one peer, in the trio the routed one of two.

Gating of the trio (``--trio-gating``): ``cognizance`` (default: the preset's gate, τ = 0.2, as in the pairs)
or ``always`` (an ablation: every peer may tutor and routing alone picks the tutor, so a question whose two
candidate tutors are both incognizant, as chem's chemistry questions are on the knowledge ladder, gets an
incognizant tutor's feedback). Note that the cognizance gap Δ sums a student's relative gaps over every
domain of the run, so a peer cognizant on one domain but not another (phys: electricity 90% known,
chemistry not at all) has Δ near 1 in the trio and is silenced there, while it tutors in its pair.

Every run goes through the fidelity benchmark's ``run_config`` (same observer, same result cache, same
worker processes), so a run is a pure function of its config and seed. The analysis is in
``opcod_core.bench.trio_analysis`` and the report in ``opcod_core.bench.trio_report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from opcod_core.bench.fidelity import METHODS, _students, pair_config, run_config, run_many
from opcod_core.bench.students import domain_roles
from opcod_core.config import RunConfig, deep_merge
from opcod_core.data import load_dataset
from opcod_core.presets import WORLD3_DOMAINS, WORLD3_NAMES, WORLD3_PAIRS, world3_trio
from opcod_core.tasks import total_steps
from opcod_core.trainer import data_spec

TRIO = "trio"
POISON_ON, POISON_OFF = "trio-poison-on", "trio-poison-off"
TRIO_GATINGS = ("always", "cognizance")


def pair_label(pair: tuple[str, str]) -> str:
    return f"pair-{pair[0]}-{pair[1]}"


@dataclass
class TrioPlan:
    seeds: list[int]
    overrides: dict = field(default_factory=dict)         # run-level config overrides (quick mode, K, lr, eval)
    student_overrides: dict = field(default_factory=dict)  # applied to every student (quick warm-up)
    student_seed: int = 0
    jobs: int = 1
    threads: int = 1
    results_dir: Path | None = None
    gating: str = "cognizance"
    poison: str | None = None           # the tutor whose feedback is corrupted (None: no poisoned variant)
    poison_from: int | None = None      # global step of the trio (None: halfway)
    threshold: float | None = None      # auto-quarantine threshold (None: the config's)
    quarantine_within: int | None = None  # the stated bound, in global steps (None: 2K)
    quick: bool = False                 # quick mode: a pipeline check (the report says so)
    recent: int | None = None           # trust.recent of the poisoned runs (None: the whole-run rule alone)


def trio_config(plan: TrioPlan) -> RunConfig:
    """The three v3 specialists on the three domains, with the pairs' settings (``presets.world3_trio``)."""
    if plan.gating not in TRIO_GATINGS:
        raise ValueError(f"gating: expected one of {list(TRIO_GATINGS)}, got {plan.gating!r}")
    over = deep_merge(plan.overrides, {"students": [plan.student_overrides] * 3}) if plan.student_overrides \
        else plan.overrides
    over = deep_merge(over, {"gating": {"mode": plan.gating}})
    return RunConfig.from_dict(deep_merge(world3_trio(plan.student_seed), over))


def pair_configs(plan: TrioPlan) -> dict[str, RunConfig]:
    """The three pairwise runs' configs (the fidelity benchmark's v3 pairs, same overrides)."""
    over = deep_merge(plan.overrides, {"students": [plan.student_overrides] * 2}) if plan.student_overrides \
        else plan.overrides
    return {pair_label(p): pair_config(p, over, world="v3", student_seed=plan.student_seed) for p in WORLD3_PAIRS}


def poison_settings(plan: TrioPlan, trio: RunConfig) -> dict:
    """The poisoned variant's tutor, first poisoned step, threshold and stated bound (module docstring)."""
    sc = trio.schedule
    if plan.poison not in WORLD3_NAMES.values():
        raise ValueError(f"poison: expected one of {list(WORLD3_NAMES.values())}, got {plan.poison!r}")
    total = total_steps(sc.rounds, sc.steps_per_direction, 3)
    start = total // 2 if plan.poison_from is None else plan.poison_from
    if not 0 <= start < total:
        raise ValueError(f"poison_from: global step {start} is outside the trio's steps 0..{total - 1}")
    threshold = trio.trust.threshold if plan.threshold is None else plan.threshold
    within = 2 * sc.steps_per_direction if plan.quarantine_within is None else plan.quarantine_within
    out = {"tutor": plan.poison, "from_step": start, "threshold": threshold, "within": within, "total_steps": total}
    return {**out, "recent": plan.recent} if plan.recent is not None else out


def variants(plan: TrioPlan) -> list[tuple[str, RunConfig, RunConfig]]:
    """(label, run config before the seed, config whose students are built) of every run of a seed."""
    trio = trio_config(plan)
    out = [(TRIO, trio, trio)]
    out += [(label, cfg.replace(METHODS["opcod"]), cfg) for label, cfg in pair_configs(plan).items()]
    if plan.poison is not None:
        p = poison_settings(plan, trio)
        for label, auto in ((POISON_ON, True), (POISON_OFF, False)):
            out.append((label, trio.replace({"faults": {"poison": {"tutor": p["tutor"], "from_step": p["from_step"]}},
                                             "trust": {"auto_quarantine": auto, "threshold": p["threshold"],
                                                       **({"recent": plan.recent} if plan.recent else {})}}), trio))
    return out


def run_trio_benchmark(plan: TrioPlan, cache_dir: Path, work: Path, log: Callable[[str], None] = print) -> dict:
    """Builds the students once, runs every variant at every seed (``fidelity.run_many``) and returns the
    results: the runs, the configs and the settings the analysis (``trio_analysis.analyse``) reads."""
    t0 = time.perf_counter()
    trio = trio_config(plan)
    data = load_dataset(data_spec(trio))        # the three domains: every pair's items are among them
    log("[trio] building the three specialists (cached after the first build)")
    _students(trio, data, cache_dir, plan.student_seed,
              progress=lambda label, i, n, loss: log(f"  {label} {i}/{n} loss {loss:.3f}") if i % 100 == 0 or i == n
              else None)
    build_s = time.perf_counter() - t0
    vs = variants(plan)
    tasks = [(cfg.replace({"seed": seed, "name": f"{label}-s{seed}"}), label, seed, data, cache_dir, work / label,
              plan.student_seed, False, plan.results_dir, students_cfg) for seed in plan.seeds
             for label, cfg, students_cfg in vs]
    t_runs = time.perf_counter()
    runs = run_many(tasks, plan.jobs, plan.threads, done=_logger(log), fn=run_config)
    results = {"mode": "trio", "plan": _plan_record(plan), "students": [s.name for s in trio.students],
               "domains": list(WORLD3_DOMAINS), "strong": {s.name: s.strong_domain for s in trio.students},
               "roles": {s.name: {d: r for d, r in domain_roles(s).items() if d} for s in trio.students},
               "config": trio.to_dict(), "pair_configs": {label: cfg.to_dict() for label, cfg in pair_configs(plan).items()},
               "poison": poison_settings(plan, trio) if plan.poison is not None else None,
               "build_s": build_s, "runs_s": time.perf_counter() - t_runs, "runs": runs}
    results["wall_s"] = time.perf_counter() - t0
    return results


def _plan_record(plan: TrioPlan) -> dict:
    return {"seeds": plan.seeds, "overrides": plan.overrides, "student_overrides": plan.student_overrides,
            "student_seed": plan.student_seed, "jobs": plan.jobs, "threads": plan.threads, "gating": plan.gating,
            "poison": plan.poison, "poison_from": plan.poison_from, "threshold": plan.threshold,
            "quarantine_within": plan.quarantine_within, "quick": plan.quick, "recent": plan.recent}


def _logger(log: Callable[[str], None]):
    """One log line per finished run: each student's initial -> final accuracy per domain it was scored on."""
    def done(task: tuple, res: dict) -> None:
        s = res["summary"]["students"]
        log(f"[trio] seed {task[2]} {task[1]}: " + "; ".join(
            f"{n} " + " ".join(f"{d[:4]} {v['initial'][d]:.2f}->{v['final'][d]:.2f}" for d in v["initial"])
            for n, v in s.items()) + (" (cached)" if res.get("cached") else f" ({res['wall_s']:.0f}s)"))
    return done
