"""The fidelity benchmark: OPCoD and its baselines in the science world, same data and step budget.

For each domain pair (A, B) the students are the ``sciworld`` preset's pair built for (A, B): student
"A" learns A's facts, a share of B's (the preset's ``warmup_partial``, or ``partial``) and hint use for
the rest of B, student "B" the reverse (``opcod_core.data.sciworld``, ``skewed_warm_up``). The students
are built once (seed ``student_seed``, cached under ``cache_dir/warm``) and every run starts from a
fresh copy of them, so every method and every seed starts from the same initial scores; the seeds vary
the training itself (data order, rollouts, feedback sampling, sibling choice) and the evaluation
samples. ``--vary-students`` builds a new pair per seed instead (slower; then the seeds also cover the
warm-up).

Methods (one framework, ``opcod_core.trainer``): ``opcod`` (cognizance gating, τ from the config),
``never`` (no peer feedback: self-distillation on the tutee's own correct siblings, SDPO-style),
``always`` (feedback from the peer every round), ``domain_selective`` (the peer tutors only on its
strong domain), ``grpo`` (verifiable reward, group-normalised advantage) and ``one_way`` (a frozen
copy of the peer's initial weights as a classic on-policy teacher). All use the same R × K schedule, batch, rollouts and learning
rate. The learning rate can be chosen on the *validation* split (``select_lr``): each candidate runs
every selected method for the selection seeds, scored by mean final validation accuracy over both
students and both domains, optionally together with the KL anchor (every (rate, anchor) of two grids,
since drift-v3.md found the anchor to decide which rates keep the strong domain); OPCoD's τ can then be
chosen the same way (``select_tau``). The test split is read only by
the benchmark runs themselves. Runs go to worker processes (``run_many``); each is a pure function of
its task, so the results do not depend on the number of workers.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from opcod_core.bench import runcache
from opcod_core.bench.aggregate import aggregate
from opcod_core.executors import build_students
from opcod_core.config import RunConfig, deep_merge, preset
from opcod_core.presets import world3_pair
from opcod_core.data import load_dataset
from opcod_core.bench.observer import BenchObserver
from opcod_core.trainer import Trainer, data_spec

METHODS: dict[str, dict] = {
    "opcod": {"algorithm": "opcod", "gating": {"mode": "cognizance"}},
    "never": {"algorithm": "opcod", "gating": {"mode": "never"}},
    "always": {"algorithm": "opcod", "gating": {"mode": "always"}},
    "domain_selective": {"algorithm": "opcod", "gating": {"mode": "domain_selective"}},
    "grpo": {"algorithm": "grpo", "gating": {"mode": "never"}},
    "one_way": {"algorithm": "one_way", "gating": {"mode": "never"}},
}
# The methods of the pre-registered primary comparisons (opcod_core.bench.primary): run at the most seeds.
PRIMARY_METHODS = ("opcod", "never", "always")
SHORT = {"chemistry": "chem", "physics": "phys", "electricity": "elec"}
QUICK_OVERRIDES = {"schedule": {"rounds": 1, "steps_per_direction": 2},
                   "rollout": {"batch_prompts": 2, "n": 4},
                   "gating": {"val_k": 1, "val_max_items": 8}, "eval": {"k": 1, "max_items": 8},
                   "break_rate": {"samples_per_step": 1}}


def pair_config(pair: tuple[str, str], overrides: dict | None = None,
                partial: tuple[float, float] | None = None, world: str = "v2", student_seed: int = 0) -> RunConfig:
    """The run config of domain pair (A, B), student 1 strong in A, student 2 strong in B.

    ``world="v3"``: the two version-3 specialists of A and B (``presets.world3_pair``), built with
    ``student_seed``. ``world="v2"``: the sciworld preset, each student partly knowing the other's domain
    with the preset's shares (or ``partial``; 0 = hint use only; v1 is v2 with ``partial=(0, 0)``)."""
    if world == "v3":
        return RunConfig.from_dict(deep_merge(world3_pair(*pair, build_seed=student_seed), overrides or {}))
    a, b = pair
    base = preset("sciworld").to_dict()
    preset_shares = tuple(next(iter((st.get("warmup_partial") or {"": 0.0}).values())) for st in base["students"])
    shares = partial if partial is not None else preset_shares
    for st, (strong, weak), share in zip(base["students"], ((a, b), (b, a)), shares, strict=True):
        st.update({"name": SHORT.get(strong, strong[:8]), "strong_domain": strong, "warmup_domains": [strong],
                   "warmup_hinted_domains": [weak], "warmup_partial": {weak: share} if share else None})
    base["data"]["domains"] = [a, b]
    return RunConfig.from_dict(deep_merge(base, overrides or {}))


class ValidationTrainer(Trainer):
    """Evaluates on the validation split instead of the test split (learning-rate selection only), after the
    last round only: the selection scores the final accuracies (``mean_final_accuracy``), and the earlier
    evaluations, a third of a run's time each at avg@16 on the whole split, would change nothing. Skipping
    them leaves every other number as it was: evaluation samples from its own seeded generator
    (``opcod_core.evaluation``), never from the training's random state. Its summary has no per-student
    initial-vs-final part (``Trainer.summary`` leaves it out without a round-0 evaluation)."""

    def task_eval(self, r: int) -> None:
        if r < self.config.schedule.rounds:
            return
        self.evals[str(r)] = self._evaluate_all("validation", self.config.eval.k, "val-eval")   # same seed every round (common random numbers)


@dataclass
class BenchPlan:
    pairs: list[tuple[str, str]]
    seeds: list[int]
    methods: list[str]
    overrides: dict = field(default_factory=dict)
    student_seed: int = 0
    vary_students: bool = False
    partial: tuple[float, float] | None = None
    jobs: int = 1           # worker processes for the runs (``run_many``)
    threads: int = 1        # torch threads per worker process
    world: str = "v2"       # v2 (v1 with partial 0,0) or v3 (opcod_core.data.sciworld3)
    seeds_by_method: dict[str, list[int]] = field(default_factory=dict)   # overrides ``seeds`` per method
    results_dir: Path | None = None     # result cache of the runs (opcod_core.bench.runcache)
    select_seeds: list[int] = field(default_factory=lambda: [0])         # training seeds of lr/tau selection

    def seeds_of(self, method: str) -> list[int]:
        return self.seeds_by_method.get(method, self.seeds)


def _students(cfg: RunConfig, data, cache_dir: Path, student_seed: int, progress=None) -> dict:
    """The pair's students built with ``student_seed``: the run seed of a v2 build, the build seeds of
    v3 specialists (``1000 * student_seed + the specialist's place in WORLD3_DOMAINS``)."""
    if any(st.build_seed is not None for st in cfg.students):
        cfg = cfg.replace({"students": [{"build_seed": 1000 * student_seed + (st.build_seed or 0) % 1000}
                                        for st in cfg.students]})
        return build_students(cfg, data, cache_dir, progress=progress)
    return build_students(cfg.replace({"seed": student_seed}), data, cache_dir, progress=progress)


def run_method(base: RunConfig, method: str, seed: int, data, cache_dir: Path, work: Path, student_seed: int,
               validation: bool = False, results_dir: Path | None = None) -> dict:
    """One run of ``method`` at ``seed`` from the students of ``student_seed``; read from (and stored in)
    the result cache ``results_dir`` when given (``opcod_core.bench.runcache``)."""
    cfg = base.replace({**METHODS[method], "seed": seed, "name": f"fidelity-{method}-s{seed}"})
    return run_config(cfg, method, seed, data, cache_dir, work, student_seed, validation, results_dir,
                      students_cfg=base)


def run_config(cfg: RunConfig, method: str, seed: int, data, cache_dir: Path, work: Path, student_seed: int,
               validation: bool = False, results_dir: Path | None = None, students_cfg: RunConfig | None = None) -> dict:
    """One run of the finished config ``cfg``, labelled ``method`` (a method of ``METHODS``, or a variant of
    another benchmark: ``opcod_core.bench.trio``), with the students of ``students_cfg`` (default ``cfg``)
    built with ``student_seed``; cached like ``run_method``."""
    key = runcache.run_key(cfg.to_json(), method, seed, student_seed, validation)
    cached = runcache.load(results_dir, key)
    if cached is not None:
        return {**cached, "cached": True}
    students = _students(students_cfg or cfg, data, cache_dir, student_seed)
    obs = BenchObserver()
    out = work / f"{method}-s{seed}{'-val' if validation else ''}"
    t0 = time.perf_counter()
    trainer = (ValidationTrainer if validation else Trainer)(cfg, out, observer=obs, data=data, students=students)
    try:
        result = trainer.run()
    finally:
        close = getattr(trainer, "close", None)  # releases generation engines where the trainer has any
        if close is not None:
            close()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    res = {"method": method, "seed": seed, "key": key, "wall_s": time.perf_counter() - t0,
           "summary": result.summary, "gates": obs.gates, "categories": obs.categories, "breaks": obs.breaks,
           "weight_l2": obs.weight_l2, "divergence": {k: sum(v) / len(v) for k, v in obs.divergence.items()},
           "divergence_n": {k: len(v) for k, v in obs.divergence.items()}, "trust": obs.trust, "poison": obs.poison}
    runcache.store(results_dir, key, res)
    return res


def _init_worker(threads: int) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per run and worker drowns the log


def run_many(tasks: list[tuple], jobs: int, threads: int = 1,
             done: Callable[[tuple, dict], None] | None = None, fn: Callable[..., dict] | None = None) -> list[dict]:
    """``fn(*task)`` (default ``run_method``) for every task, in ``jobs`` worker processes (spawned, ``threads``
    torch threads each) or inline when ``jobs`` is 1; results in task order. Every run is a pure function of its
    task (students reloaded from the warm-up cache, seeds in the config), so the results do not depend
    on ``jobs``; on this 2-core machine two 1-thread processes do about twice the work of one process
    with two threads, since the tiny models are too small to use two threads well."""
    fn = fn or run_method
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(fn(*t))
            if done is not None:
                done(t, out[-1])
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if done is not None:
                done(tasks[i], results[i])
    return [results[i] for i in range(len(tasks))]


def mean_final_accuracy(res: dict, rounds: int) -> float:
    """Mean of a run's final (round ``rounds``) accuracies over both students and both domains."""
    fin = res["summary"]["evals"][str(rounds)]
    return sum(v for per in fin.values() for v in per.values()) / sum(len(per) for per in fin.values())


def _selection(base: RunConfig, variants: list[tuple[str, RunConfig, str]], data, cache_dir: Path, work: Path,
               student_seed: int, seeds: list[int], results_dir: Path | None, log: Callable[[str], None],
               jobs: int, threads: int) -> dict[str, dict[str, dict]]:
    """Runs every (label, config, method) variant at every seed on the validation split; returns
    ``{label: {method: {"score", "scores", "weight_l2", "gates"}}}`` with score = mean over seeds of the
    mean final validation accuracy and weight_l2 = mean final ‖θ − θ₀‖ over seeds and tutees."""
    tasks = [(cfg, m, seed, data, cache_dir, work / ("select-" + re.sub(r"[^\w.+-]+", "-", label)), student_seed,
              True, results_dir)
             for label, cfg, m in variants for seed in seeds]
    labels = [label for label, _, _ in variants for _ in seeds]
    score = functools.partial(mean_final_accuracy, rounds=base.schedule.rounds)
    results = run_many(tasks, jobs, threads, done=lambda t, res: log(
        f"  {t[0].optim.lr:g} / tau {t[0].gating.tau:g} {t[1]} seed {t[2]}: mean final validation accuracy "
        f"{score(res):.3f}, weight distance {_mean(list(res.get('weight_l2', {}).values())):.4f}"))
    table: dict[str, dict[str, dict]] = {}
    for label, t, res in zip(labels, tasks, results, strict=True):
        cell = table.setdefault(label, {}).setdefault(t[1], {"scores": [], "weight_l2": [], "gates": []})
        cell["scores"].append(score(res))
        cell["weight_l2"] += list(res.get("weight_l2", {}).values())
        cell["gates"] += res["gates"]
    for per in table.values():
        for cell in per.values():
            cell["score"] = _mean(cell["scores"])
            cell["weight_l2"] = _mean(cell["weight_l2"])
    return table


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def select_lr(base: RunConfig, grid: list[float], methods: list[str], data, cache_dir: Path, work: Path,
              student_seed: int, log: Callable[[str], None] = print, jobs: int = 1, threads: int = 1,
              seeds: list[int] | None = None, results_dir: Path | None = None,
              anchors: list[float] | None = None) -> tuple[tuple[float, float | None], dict]:
    """Chooses the learning rate on the validation split: the rate with the best score summed over
    ``methods`` (each the mean over ``seeds`` of the mean final validation accuracy). The table also
    gives each rate's weight distance, so a reader sees whether a rate moved the models at all.

    With ``anchors`` (coefficients of ``loss.kl_anchor``) the candidates are every (rate, anchor) of the
    two grids, labelled ``"<lr> / KL anchor <a>"``; without, the base config's anchor is kept and the
    labels are the rates alone. Returns ``((lr, anchor or None), table)``; ties go to the earlier candidate."""
    candidates = [(lr, a) for lr in grid for a in (anchors or [None])]

    def label(lr: float, a: float | None) -> str:
        return f"{lr:g}" if a is None else f"{lr:g} / KL anchor {a:g}"

    def config(lr: float, a: float | None) -> RunConfig:
        return base.replace({"optim": {"lr": lr}, **({} if a is None else {"loss": {"kl_anchor": a}})})

    variants = [(label(lr, a), config(lr, a), m) for lr, a in candidates for m in methods]
    table = _selection(base, variants, data, cache_dir, work, student_seed, seeds or [0], results_dir, log,
                       jobs, threads)
    best = max(candidates, key=lambda c: (sum(x["score"] for x in table[label(*c)].values()), -candidates.index(c)))
    return best, table


def select_tau(base: RunConfig, grid: list[float], data, cache_dir: Path, work: Path, student_seed: int,
               log: Callable[[str], None] = print, jobs: int = 1, threads: int = 1,
               seeds: list[int] | None = None, results_dir: Path | None = None) -> tuple[float, dict]:
    """Chooses OPCoD's τ on the validation split (at the chosen learning rate): the τ with the best
    score; ties go to the earlier grid value (put the paper's 0.2 first). τ is the one hyperparameter
    OPCoD has beyond the baselines': Δ is a sum of relative gaps, so its scale depends on the number of
    domains and on how far from perfect the students are, and the paper's 0.2 (Qwen3-8B on SciKnowEval)
    need not carry over to 1M-parameter students."""
    variants = [(f"{tau:g}", base.replace({"gating": {"tau": tau}}), "opcod") for tau in grid]
    table = _selection(base, variants, data, cache_dir, work, student_seed, seeds or [0], results_dir, log,
                       jobs, threads)
    flat = {label: {"opcod": per["opcod"]["score"], "weight_l2": per["opcod"]["weight_l2"],
                    "tutor_decisions": sum(g["decision"] == "tutor" for g in per["opcod"]["gates"]),
                    "gates": len(per["opcod"]["gates"])} for label, per in table.items()}
    best = max(grid, key=lambda tau: (flat[f"{tau:g}"]["opcod"], -grid.index(tau)))
    return best, flat


def _choose(base: RunConfig, plan: BenchPlan, data, cache_dir: Path, pwork: Path, log: Callable[[str], None],
            lr_grid: list[float] | None, lr_methods: list[str] | None, tau_grid: list[float] | None,
            key: str, anchor_grid: list[float] | None = None) -> tuple[RunConfig, dict | None, dict | None]:
    """The learning rate (with the KL anchor when ``anchor_grid`` is given), then OPCoD's τ, chosen on the
    validation split (each when its grid is given)."""
    lr_table = tau_table = None
    sel = {"seeds": plan.select_seeds, "results_dir": plan.results_dir}
    if lr_grid:
        log(f"[{key}] choosing the learning rate on validation from {lr_grid}"
            f"{f' x KL anchor {anchor_grid}' if anchor_grid else ''}, seeds {plan.select_seeds}")
        (lr, anchor), lr_table = select_lr(base, lr_grid, lr_methods or plan.methods, data, cache_dir, pwork,
                                           plan.student_seed, log, plan.jobs, plan.threads, anchors=anchor_grid, **sel)
        base = base.replace({"optim": {"lr": lr}, **({} if anchor is None else {"loss": {"kl_anchor": anchor}})})
    if tau_grid and "opcod" in plan.methods:
        log(f"[{key}] choosing OPCoD's tau on validation from {tau_grid}")
        tau, tau_table = select_tau(base, tau_grid, data, cache_dir, pwork, plan.student_seed, log,
                                    plan.jobs, plan.threads, **sel)
        base = base.replace({"gating": {"tau": tau}})
    return base, lr_table, tau_table


def _measured_world(base: RunConfig, students: dict, data, plan: BenchPlan, world_items: int | None,
                    log: Callable[[str], None], key: str) -> dict:
    """The pair's knowledge-split table (``measure_world``), read from the result cache when it holds it:
    minutes of one core per pair, the same at every resumption of the benchmark (a pure function of the
    students, the config and the code, like a run: ``opcod_core.bench.runcache``)."""
    from opcod_core.bench.world import measure_world

    cache_key = runcache.run_key(base.to_json(), f"world-{world_items}", 0, plan.student_seed, True)
    cached = runcache.load(plan.results_dir, cache_key)
    if cached is not None:
        log(f"[{key}] knowledge split on validation: read from the result cache")
        return cached["world"]
    log(f"[{key}] measuring the knowledge split on validation")
    world = measure_world(base, students, data, "validation", k=base.eval.k, max_items=world_items)
    runcache.store(plan.results_dir, cache_key, {"world": world})
    return world


def run_benchmark(plan: BenchPlan, cache_dir: Path, work: Path, log: Callable[[str], None] = print,
                  lr_grid: list[float] | None = None, lr_methods: list[str] | None = None,
                  world_items: int | None = 48, tau_grid: list[float] | None = None,
                  anchor_grid: list[float] | None = None) -> dict:
    from opcod_core.bench.primary import primary_comparisons

    t0 = time.perf_counter()
    results: dict = {"plan": _plan_record(plan), "pairs": {}}
    all_seeds = sorted({s for m in plan.methods for s in plan.seeds_of(m)})
    for pair in plan.pairs:
        key = f"{pair[0]}-{pair[1]}"
        base = pair_config(pair, plan.overrides, plan.partial, plan.world, plan.student_seed)
        data = load_dataset(data_spec(base))
        names = [s.name for s in base.students]
        pwork = work / key
        t_build = time.perf_counter()
        log(f"[{key}] building students (cached after the first build)")
        students = _students(base, data, cache_dir, plan.student_seed,
                             progress=lambda label, i, n, loss: log(f"  {label} {i}/{n} loss {loss:.3f}")
                             if i % 100 == 0 or i == n else None)
        build_s = time.perf_counter() - t_build
        world = _measured_world(base, students, data, plan, world_items, log, key)
        del students
        base, lr_table, tau_table = _choose(base, plan, data, cache_dir, pwork, log, lr_grid, lr_methods, tau_grid,
                                            key, anchor_grid)
        if plan.vary_students:  # build every seed's pair once, before the workers load them from the cache
            for seed in all_seeds:
                _students(base, data, cache_dir, seed)

        tasks = [(base, m, seed, data, cache_dir, pwork, seed if plan.vary_students else plan.student_seed, False,
                  plan.results_dir) for seed in all_seeds for m in plan.methods if seed in plan.seeds_of(m)]
        t_runs = time.perf_counter()
        runs = run_many(tasks, plan.jobs, plan.threads, done=_run_logger(key, names, list(base.data.domains), log))
        strong = {s.name: s.strong_domain for s in base.students}
        results["pairs"][key] = {
            "domains": list(base.data.domains), "students": names, "strong": strong, "config": base.to_dict(),
            "build_s": build_s, "runs_s": time.perf_counter() - t_runs, "world": world,
            "lr_selection": lr_table, "tau_selection": tau_table,
            "primary": primary_comparisons(runs, names, strong, list(base.data.domains)),
            "aggregate": aggregate(runs, names, list(base.data.domains)), "runs": runs}
    results["wall_s"] = time.perf_counter() - t0
    return results


def _plan_record(plan: BenchPlan) -> dict:
    return {"pairs": [list(p) for p in plan.pairs], "seeds": plan.seeds, "methods": plan.methods,
            "seeds_by_method": {m: plan.seeds_of(m) for m in plan.methods}, "overrides": plan.overrides,
            "student_seed": plan.student_seed, "vary_students": plan.vary_students, "partial": plan.partial,
            "world": plan.world, "select_seeds": plan.select_seeds, "jobs": plan.jobs, "threads": plan.threads}


def _run_logger(key: str, names: list[str], domains: list[str], log: Callable[[str], None]):
    """One log line per finished run: each student's initial -> final accuracy per domain."""
    def done(task: tuple, res: dict) -> None:
        s = res["summary"]["students"]
        log(f"[{key}] seed {task[2]} {task[1]}: " + "; ".join(
            f"{n} " + " ".join(f"{d[:4]} {s[n]['initial'][d]:.2f}->{s[n]['final'][d]:.2f}" for d in domains)
            for n in names) + (" (cached)" if res.get("cached") else f" ({res['wall_s']:.0f}s)"))
    return done


def save_results(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
