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
every selected method for one seed, scored by mean final validation accuracy over both students and
both domains; OPCoD's τ can then be chosen the same way (``select_tau``). The test split is read only by
the benchmark runs themselves. Runs go to worker processes (``run_many``); each is a pure function of
its task, so the results do not depend on the number of workers.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from opcod_core.bench.stats import interval, pareto, verdict
from opcod_core.breakrate import break_counts
from opcod_core.build import build_students
from opcod_core.config import RunConfig, deep_merge, preset
from opcod_core.data import load_dataset
from opcod_core.trainer import Trainer, data_spec

METHODS: dict[str, dict] = {
    "opcod": {"algorithm": "opcod", "gating": {"mode": "cognizance"}},
    "never": {"algorithm": "opcod", "gating": {"mode": "never"}},
    "always": {"algorithm": "opcod", "gating": {"mode": "always"}},
    "domain_selective": {"algorithm": "opcod", "gating": {"mode": "domain_selective"}},
    "grpo": {"algorithm": "grpo", "gating": {"mode": "never"}},
    "one_way": {"algorithm": "one_way", "gating": {"mode": "never"}},
}
SHORT = {"chemistry": "chem", "physics": "phys", "electricity": "elec"}
QUICK_OVERRIDES = {"schedule": {"rounds": 1, "steps_per_direction": 2},
                   "rollout": {"batch_prompts": 2, "n": 4},
                   "gating": {"val_k": 1, "val_max_items": 8}, "eval": {"k": 1, "max_items": 8},
                   "break_rate": {"samples_per_step": 1}}


def pair_config(pair: tuple[str, str], overrides: dict | None = None,
                partial: tuple[float, float] | None = None) -> RunConfig:
    """The sciworld preset for domain pair (A, B): student 1 strong in A, student 2 strong in B; each
    partly knows the other's domain with the preset's shares (or ``partial``; 0 = hint use only)."""
    a, b = pair
    base = preset("sciworld").to_dict()
    preset_shares = tuple(next(iter((st.get("warmup_partial") or {"": 0.0}).values())) for st in base["students"])
    shares = partial if partial is not None else preset_shares
    for st, (strong, weak), share in zip(base["students"], ((a, b), (b, a)), shares, strict=True):
        st.update({"name": SHORT.get(strong, strong[:8]), "strong_domain": strong, "warmup_domains": [strong],
                   "warmup_hinted_domains": [weak], "warmup_partial": {weak: share} if share else None})
    base["data"]["domains"] = [a, b]
    return RunConfig.from_dict(deep_merge(base, overrides or {}))


class BenchObserver:
    """Keeps what the report needs from a run's events (not the per-token arrays)."""

    def __init__(self) -> None:
        self.gates: list[dict] = []
        self.categories: dict[str, dict[str, int]] = {}     # tutor -> category -> count
        self.breaks: list[dict] = []
        self.divergence: dict[str, list[float]] = {}        # "tutee|domain|context" -> [rollout loss]
        self.steps = 0

    def on_event(self, e: dict) -> None:
        kind = e["type"]
        if kind == "gate":
            self.gates.append({k: e[k] for k in ("round", "student", "decision", "delta", "tau", "scores")})
        elif kind == "exchange":
            if e.get("category"):
                c = self.categories.setdefault(e["tutor"], {})
                c[e["category"]] = c.get(e["category"], 0) + 1
            if not e.get("skipped"):
                key = f"{e['tutee']}|{e['domain']}|{e['context_used']}"
                self.divergence.setdefault(key, []).append(float(e.get("loss") or 0.0))
        elif kind == "break":
            self.breaks.append({"tutor": e["tutor"], "cognizant": e["tutor_cognizant"], "broken": e["broken"],
                                "correct_without_f": e["correct_without_f"]})
        elif kind == "step":
            self.steps += 1


class ValidationTrainer(Trainer):
    """Evaluates on the validation split instead of the test split (learning-rate selection only)."""

    def task_eval(self, r: int) -> None:
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


def _students(cfg: RunConfig, data, cache_dir: Path, student_seed: int, progress=None) -> dict:
    return build_students(cfg.replace({"seed": student_seed}), data, cache_dir, progress=progress)


def run_method(base: RunConfig, method: str, seed: int, data, cache_dir: Path, work: Path, student_seed: int,
               validation: bool = False) -> dict:
    cfg = base.replace({**METHODS[method], "seed": seed, "name": f"fidelity-{method}-s{seed}"})
    students = _students(base, data, cache_dir, student_seed)
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
    return {"method": method, "seed": seed, "wall_s": time.perf_counter() - t0, "summary": result.summary,
            "gates": obs.gates, "categories": obs.categories, "breaks": obs.breaks,
            "divergence": {k: sum(v) / len(v) for k, v in obs.divergence.items()},
            "divergence_n": {k: len(v) for k, v in obs.divergence.items()}}


def _init_worker(threads: int) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per run and worker drowns the log


def run_many(tasks: list[tuple], jobs: int, threads: int = 1,
             done: Callable[[tuple, dict], None] | None = None) -> list[dict]:
    """``run_method(*task)`` for every task, in ``jobs`` worker processes (spawned, ``threads`` torch
    threads each) or inline when ``jobs`` is 1; results in task order. Every run is a pure function of its
    task (students reloaded from the warm-up cache, seeds in the config), so the results do not depend
    on ``jobs``; on this 2-core machine two 1-thread processes do about twice the work of one process
    with two threads, since the tiny models are too small to use two threads well."""
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(run_method(*t))
            if done is not None:
                done(t, out[-1])
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(run_method, *t): i for i, t in enumerate(tasks)}
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


def select_lr(base: RunConfig, grid: list[float], methods: list[str], data, cache_dir: Path, work: Path,
              student_seed: int, log: Callable[[str], None] = print, jobs: int = 1,
              threads: int = 1) -> tuple[float, dict]:
    """Chooses the learning rate on the validation split (seed 0 of training, one run per method)."""
    tasks = [(base.replace({"optim": {"lr": lr}}), m, 0, data, cache_dir, work / f"lr-{lr:g}", student_seed, True)
             for lr in grid for m in methods]

    score = functools.partial(mean_final_accuracy, rounds=base.schedule.rounds)

    results = run_many(tasks, jobs, threads, done=lambda t, res: log(
        f"  lr {t[0].optim.lr:g} {t[1]}: mean final validation accuracy {score(res):.3f}"))
    table: dict[str, dict[str, float]] = {}
    for t, res in zip(tasks, results, strict=True):
        table.setdefault(f"{t[0].optim.lr:g}", {})[t[1]] = score(res)
    best = max(grid, key=lambda lr: sum(table[f"{lr:g}"].values()))
    return best, table


def select_tau(base: RunConfig, grid: list[float], data, cache_dir: Path, work: Path, student_seed: int,
               log: Callable[[str], None] = print, jobs: int = 1, threads: int = 1) -> tuple[float, dict]:
    """Chooses OPCoD's τ on the validation split (seed 0, at the chosen learning rate): the τ with the
    best mean final validation accuracy; ties go to the earlier grid value (put the paper's 0.2 first).
    τ is the one hyperparameter OPCoD has beyond the baselines': Δ is a sum of relative gaps, so its
    scale depends on the number of domains and on how far from perfect the students are, and the
    paper's 0.2 (Qwen3-8B on SciKnowEval) need not carry over to 1M-parameter students."""
    tasks = [(base.replace({"gating": {"tau": tau}}), "opcod", 0, data, cache_dir, work / f"tau-{tau:g}",
              student_seed, True) for tau in grid]

    score = functools.partial(mean_final_accuracy, rounds=base.schedule.rounds)

    results = run_many(tasks, jobs, threads, done=lambda t, res: log(
        f"  tau {t[0].gating.tau:g}: mean final validation accuracy {score(res):.3f}, gate decisions "
        + ", ".join(f"r{g['round']} {g['student']} {g['decision']} (Δ {g['delta']:.2f})" for g in res["gates"])))
    table = {f"{t[0].gating.tau:g}": {"opcod": score(res),
                                      "tutor_decisions": sum(g["decision"] == "tutor" for g in res["gates"]),
                                      "gates": len(res["gates"])}
             for t, res in zip(tasks, results, strict=True)}
    best = max(grid, key=lambda tau: (table[f"{tau:g}"]["opcod"], -grid.index(tau)))
    return best, table


def aggregate(runs: list[dict], names: list[str], domains: list[str]) -> dict:
    """Per method and student: intervals of initial, final and change per domain; Pareto counts."""
    out: dict = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        rs = [r for r in runs if r["method"] == method]
        per_student = {}
        for name in names:
            init = [r["summary"]["students"][name]["initial"] for r in rs]
            fin = [r["summary"]["students"][name]["final"] for r in rs]
            change = {d: interval([f[d] - i[d] for i, f in zip(init, fin)]) for d in domains}
            per_student[name] = {
                "initial": {d: interval([x[d] for x in init]).to_dict() for d in domains},
                "final": {d: interval([x[d] for x in fin]).to_dict() for d in domains},
                "change": {d: c.to_dict() for d, c in change.items()},
                "pareto_seeds": sum(pareto(i, f) for i, f in zip(init, fin)), "n_seeds": len(rs),
                "verdict": verdict(change)}
        gates: dict = {}
        for r in rs:
            for g in r["gates"]:
                key = f"{g['round']}|{g['student']}"
                d = gates.setdefault(key, {"tutor": 0, "n": 0, "deltas": []})
                d["tutor"] += g["decision"] == "tutor"
                d["n"] += 1
                d["deltas"].append(g["delta"])
        cats: dict = {}
        for r in rs:
            for tutor, c in r["categories"].items():
                for k, v in c.items():
                    cats.setdefault(tutor, {}).setdefault(k, 0)
                    cats[tutor][k] += v
        # tutor -> cognizant|incognizant -> break_counts over every seed's samples: the conditional rate
        # P(wrong with f | right without f) = broken / eligible, counts summed, never rates averaged
        breaks: dict = {}
        for tutor in sorted({b["tutor"] for r in rs for b in r["breaks"]}):
            breaks[tutor] = {c: break_counts(b for r in rs for b in r["breaks"]
                                             if b["tutor"] == tutor and b["cognizant"] == (c == "cognizant"))
                             for c in ("cognizant", "incognizant")}
        div: dict = {}
        for r in rs:
            for k, v in r["divergence"].items():
                n = r["divergence_n"][k]
                acc = div.setdefault(k, [0.0, 0])
                acc[0] += v * n
                acc[1] += n
        out[method] = {"students": per_student, "gates": gates, "categories": cats, "breaks": breaks,
                       "divergence": {k: {"mean": s / n, "n": n} for k, (s, n) in div.items()},
                       "wall_s": sum(r["wall_s"] for r in rs)}
    return out


def run_benchmark(plan: BenchPlan, cache_dir: Path, work: Path, log: Callable[[str], None] = print,
                  lr_grid: list[float] | None = None, lr_methods: list[str] | None = None,
                  world_items: int = 48, tau_grid: list[float] | None = None) -> dict:
    from opcod_core.bench.world import measure_world

    t0 = time.perf_counter()
    results: dict = {"plan": {"pairs": [list(p) for p in plan.pairs], "seeds": plan.seeds, "methods": plan.methods,
                              "overrides": plan.overrides, "student_seed": plan.student_seed,
                              "vary_students": plan.vary_students, "partial": plan.partial,
                              "jobs": plan.jobs, "threads": plan.threads},
               "pairs": {}}
    for pair in plan.pairs:
        key = f"{pair[0]}-{pair[1]}"
        base = pair_config(pair, plan.overrides, plan.partial)
        data = load_dataset(data_spec(base))
        names = [s.name for s in base.students]
        pwork = work / key
        t_build = time.perf_counter()
        log(f"[{key}] building students (cached after the first build)")
        students = _students(base, data, cache_dir, plan.student_seed,
                             progress=lambda label, i, n, loss: log(f"  {label} {i}/{n} loss {loss:.3f}")
                             if i % 100 == 0 or i == n else None)
        build_s = time.perf_counter() - t_build
        log(f"[{key}] measuring the knowledge split on validation")
        world = measure_world(base, students, data, "validation", k=base.eval.k, max_items=world_items)
        del students
        lr_table = None
        if lr_grid:
            log(f"[{key}] choosing the learning rate on validation from {lr_grid}")
            lr, lr_table = select_lr(base, lr_grid, lr_methods or plan.methods, data, cache_dir, pwork,
                                     plan.student_seed, log, plan.jobs, plan.threads)
            base = base.replace({"optim": {"lr": lr}})
        tau_table = None
        if tau_grid and "opcod" in plan.methods:
            log(f"[{key}] choosing OPCoD's tau on validation from {tau_grid}")
            tau, tau_table = select_tau(base, tau_grid, data, cache_dir, pwork, plan.student_seed, log,
                                        plan.jobs, plan.threads)
            base = base.replace({"gating": {"tau": tau}})
        if plan.vary_students:  # build every seed's pair once, before the workers load them from the cache
            for seed in plan.seeds:
                _students(base, data, cache_dir, seed)

        def done(task: tuple, res: dict) -> None:
            s = res["summary"]["students"]
            log(f"[{key}] seed {task[2]} {task[1]}: " + "; ".join(
                f"{n} " + " ".join(f"{d[:4]} {s[n]['initial'][d]:.2f}->{s[n]['final'][d]:.2f}"
                                   for d in base.data.domains) for n in names) + f" ({res['wall_s']:.0f}s)")

        tasks = [(base, m, seed, data, cache_dir, pwork, seed if plan.vary_students else plan.student_seed)
                 for seed in plan.seeds for m in plan.methods]
        runs = run_many(tasks, plan.jobs, plan.threads, done=done)
        results["pairs"][key] = {
            "domains": list(base.data.domains), "students": names,
            "strong": {s.name: s.strong_domain for s in base.students}, "config": base.to_dict(),
            "build_s": build_s, "world": world, "lr_selection": lr_table, "tau_selection": tau_table,
            "aggregate": aggregate(runs, names, list(base.data.domains)), "runs": runs}
    results["wall_s"] = time.perf_counter() - t0
    return results


def save_results(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
