"""``opcod bench students``: is the knowledge split of the v3 specialists a property of the data, or of
the float path? (the fidelity issue, point 5)

The v2 students, built from the same preset on another CPU (and again here with one torch thread),
came out with a different knowledge split from the report's. This command builds every specialist of
the version-3 world for each build seed under each torch thread count (a different reduction order
changes the floats the way another CPU does), each (seed, threads) in its own process and its own
cache directory (the warm-up cache key leaves the thread count out on purpose: a run must not depend
on it), and reports per specialist and domain role (strong, partly known, unknown) the plain
validation accuracy of every build (avg@4, ``opcod_core.build_check``), the spread (min to max) and how
many builds met the intended interval (``warmup_expect``), which the build itself enforces.

A world takes hours on a CPU, so the command resumes: each build's row is kept when the build ends,
whether it met the check or not (a missed build leaves no cached student, and would otherwise be built
again), and a later invocation with the same inputs reads the row instead of building. Rows go to
``--rows-dir`` as ``<warm-up key>-<name>-t<threads>.json`` (small JSON, meant to be committed: the 18
builds of a full spread are more than one working session, and the student cache does not outlive the
machine), or without it to ``<cache dir>/spread/<warm-up key>-<name>.json``; a row found in either place
is used, and one found only in the cache is copied to the rows directory. Each row names the machine
that built it, and a passed build's row the digest of the student it cached (``threads_check``), so that
builds under different thread counts can be compared. ``--report-only`` reports the rows built so far;
``--probe-steps N`` (``run_probe``) compares the first N warm-up steps across thread counts instead of
building. The report is ``students_report``'s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from opcod_core.bench import runcache
from opcod_core.bench.students_report import warm_text
from opcod_core.bench.threads_check import compare_probes, student_digest, tensors_digest


def domain_roles(st) -> dict[str, str]:
    """Each domain's role for a v3 specialist: strong (its own), partial (partly known, right where it
    knows), weak (partly known, wrong feedback where it does not know), unknown (wrong feedback, nothing
    known: the v3 ladder before the weak domains)."""
    partial, corrupt = st.warmup_partial or {}, st.warmup_corrupt_domains or ()
    return {st.strong_domain: "strong", **{d: "weak" if d in corrupt else "partial" for d in partial},
            **{d: "unknown" for d in corrupt if d not in partial}}


def build_world(build_seed: int, threads: int, cache_dir: Path, steps: int | None = None,
                decay_steps: int | None = None, rows_dir: Path | None = None,
                specialists: tuple[str, ...] | None = None, progress=None, read_only: bool = False) -> list[dict]:
    """Builds the v3 specialists (those of ``specialists``, strong domains; default all three) with
    ``build_seed`` under ``threads`` torch threads; one row per specialist: measured accuracy per domain,
    its role, whether the build check passed, build time. ``progress``: ``build_student``'s callback (label,
    step, steps, loss), for a build watched while it runs. ``read_only``: the rows already built, nothing
    built (a report over a spread that is not complete yet)."""
    import torch

    from opcod_core.build import build_student, warmup_data
    from opcod_core.build_check import BuildCheckError, measure_student
    from opcod_core.data import load_dataset
    from opcod_core.presets import WORLD3_DOMAINS
    from opcod_core.trainer import data_spec

    torch.set_num_threads(threads)
    rows = []
    for strong in specialists or WORLD3_DOMAINS:
        at, cfg = specialist_config(strong, build_seed, steps, decay_steps)
        st = cfg.students[at]
        data = load_dataset(data_spec(cfg))
        done, found = _row_paths(cache_dir, rows_dir, threads, st, cfg, data)
        if found is not None:
            rows.append(_read_row(found, done, cache_dir, st, cfg, data))
            print(f"  [seed {build_seed} threads {threads}] {st.name}: read from {found}", flush=True)
            continue
        if read_only:
            continue
        t0 = time.perf_counter()
        try:
            rt = build_student(at, cfg, data, cache_dir=cache_dir, progress=progress)
            measured = measure_student(rt, list(st.warmup_expect or {}), cfg, warmup_data(st, cfg, data))
            passed, recorded = True, _recorded_check(st, cfg, data, cache_dir)
            warm, self_teacher = recorded.get("warmup", {}), recorded.get("self_teacher", {})
        except BuildCheckError as exc:
            measured, passed, warm = exc.measured, False, getattr(exc, "warmup", {})
            self_teacher = exc.self_teacher
        rows.append({"student": st.name, "build_seed": build_seed, "threads": threads, "passed": passed,
                     "measured": measured, "self_teacher": self_teacher,
                     "self_teacher_tolerance": st.warmup_self_teacher_tolerance, "roles": {d: r for d, r in domain_roles(st).items() if d},
                     "expect": {d: list(b) for d, b in (st.warmup_expect or {}).items()},
                     "steps": st.warmup_sft_steps, "warmup": warm, "build_s": time.perf_counter() - t0,
                     "machine": machine_text()})
        rows[-1]["weights_sha256"] = _digest_of(rows[-1], cache_dir, st, cfg, data)   # None when it missed
        runcache.store(done.parent, done.stem, rows[-1])   # atomically: a killed build leaves no half row
        print(f"  [seed {build_seed} threads {threads}] {st.name}: "   # each build as it ends (a world takes hours)
              + ", ".join(f"{d} {v:.3f}" for d, v in measured.items()) + f"; {warm_text(warm)}", flush=True)
    return rows


def specialist_config(strong: str, build_seed: int, steps: int | None = None, decay_steps: int | None = None,
                      **overrides):
    """(position, run config) of the specialist of ``strong``: any pair that holds it (one warm-up key
    across pairs), its warm-up length and any other student field (``overrides``) overridden where asked."""
    from opcod_core.config import RunConfig
    from opcod_core.presets import WORLD3_PAIRS, world3_pair

    pair = next(p for p in WORLD3_PAIRS if strong in p)
    at = pair.index(strong)
    raw = world3_pair(*pair, build_seed=build_seed)
    for name, value in (("warmup_sft_steps", steps), ("warmup_decay_steps", decay_steps)):
        if value is not None:
            raw["students"][at][name] = value
    raw["students"][at].update(overrides)
    return at, RunConfig.from_dict(raw)


def _read_row(found: Path, done: Path, cache_dir: Path, st, cfg, data) -> dict:
    """A build's row read back; copied to where rows are written, with the digest of its cached student
    when it lacked one (``_digest_of``)."""
    row = json.loads(found.read_text())
    digest = _digest_of(row, cache_dir, st, cfg, data)
    if found != done or digest != row.get("weights_sha256"):
        row["weights_sha256"] = digest
        runcache.store(done.parent, done.stem, row)
    return row


def _row_paths(cache_dir: Path, rows_dir: Path | None, threads: int, st, cfg, data) -> tuple[Path, Path | None]:
    """Where a build's row is written (the rows directory, else the per-thread cache) and where one was
    found, if anywhere: by the warm-up key of its inputs and the thread count."""
    from opcod_core.build import warmup_data, warmup_key

    key = warmup_key(st, cfg, 0, warmup_data(st, cfg, data))
    cached = Path(cache_dir) / "spread" / f"{key}-{st.name}.json"
    target = cached if rows_dir is None else Path(rows_dir) / f"{key}-{st.name}-t{threads}.json"
    return target, next((p for p in (target, cached) if p.exists()), None)


def _digest_of(row: dict, cache_dir: Path, st, cfg, data) -> str | None:
    """The digest of the student a passed build cached (``threads_check.student_digest``): the one its
    row records, else the one in this cache (a row built before rows kept it), else None."""
    if not row.get("passed"):
        return None
    if row.get("weights_sha256"):
        return row["weights_sha256"]
    from opcod_core.build import warmup_data, warmup_key

    return student_digest(Path(cache_dir) / "warm" / warmup_key(st, cfg, 0, warmup_data(st, cfg, data)) / st.name)


def machine_text() -> str:
    """The machine a build ran on, as the rows and the report name it."""
    import os
    import platform

    import torch

    from opcod_core.bench.floatpath import machine_note

    return (f"{platform.machine()} Linux, {_cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{machine_note()}")


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), since a build at one thread differs between CPU vendors
    (seed 0's chem: 3,049 warm-up steps on an Intel Xeon, 2,970 on an AMD EPYC; fidelity-v3-students.md)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _recorded_check(st, cfg, data, cache_dir: Path) -> dict:
    """What the build recorded (``build_check.json``): its warm-up (steps run, loss at the end, when the
    decay began) and its own domains' accuracy with a correct s."""
    from opcod_core.build import warmup_data, warmup_key

    path = Path(cache_dir) / "warm" / warmup_key(st, cfg, 0, warmup_data(st, cfg, data)) / st.name / "build_check.json"
    return json.loads(path.read_text()) if path.exists() else {}


class StepLog:
    """A build's progress as log lines, every ``every`` steps: the mean loss of those steps. A spread's
    build runs for 30-80 minutes in a worker process, and without it the log is silent until it ends."""

    def __init__(self, prefix: str, every: int = 500):
        self.prefix, self.every, self.losses = prefix, every, []

    def __call__(self, label: str, step: int, steps: int, loss: float) -> None:
        self.losses.append(loss)
        if step % self.every == 0 or step == steps:
            mean = sum(self.losses) / len(self.losses)
            print(f"  [{self.prefix}] {label}: step {step}/{steps}, mean loss {mean:.4f} over "
                  f"{len(self.losses)} steps", flush=True)
            self.losses.clear()


def _task(args: tuple) -> list[dict]:
    seed, threads, *_rest, specialists = args
    return build_world(*args, progress=StepLog(f"seed {seed} threads {threads} {'/'.join(specialists)}"))


def run_spread(build_seeds: list[int], threads: list[int], cache_root: Path, jobs: int = 2,
               steps: int | None = None, log=print, decay_steps: int | None = None,
               rows_dir: Path | None = None, specialists: tuple[str, ...] | None = None,
               read_only: bool = False) -> list[dict]:
    """Every (seed, threads, specialist) build's row, built in ``jobs`` spawned processes where it is not
    found; ``read_only``: only the rows found, read in this process (``opcod bench students --report-only``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from opcod_core.presets import WORLD3_DOMAINS

    # one task per specialist, not per world: the three builds of a seed are independent, and the longest
    # one (about 35 min at one thread) then bounds a seed's wall time instead of the sum (about 75 min)
    tasks = [(seed, t, Path(cache_root) / f"threads-{t}", steps, decay_steps, rows_dir, (strong,))
             for t in threads for seed in build_seeds for strong in specialists or WORLD3_DOMAINS]
    rows: list[dict] = []
    if read_only:
        rows = [r for task in tasks for r in build_world(*task, read_only=True)]
        return sorted(rows, key=lambda r: (r["student"], r["build_seed"], r["threads"]))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_task, t): t for t in tasks}
        for fut in as_completed(futures):
            for row in fut.result():
                log(f"  seed {row['build_seed']} threads {row['threads']} {row['student']}: "
                    + ", ".join(f"{row['roles'][d]} {d} {v:.3f}" for d, v in row["measured"].items())
                    + f" ({'met' if row['passed'] else 'MISSED'} warmup_expect, {row['build_s']:.0f} s)")
                rows.append(row)
    return sorted(rows, key=lambda r: (r["student"], r["build_seed"], r["threads"]))


def probe(build_seed: int, strong: str, threads: int, steps: int) -> dict:
    """The first ``steps`` warm-up steps of the ``strong`` specialist's first attempt at ``build_seed``
    under ``threads`` torch threads: a real build of the preset's student with only its length changed
    (``warmup_sft_steps``, a constant rate: the converge schedule's rate before its decay), no build check
    and no cache. Returns every step's loss (``repr``, exact) and the digest of the weights after them."""
    import torch

    from opcod_core.build import build_student
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    torch.set_num_threads(threads)
    at, cfg = specialist_config(strong, build_seed, steps=steps, warmup_schedule="constant", warmup_attempts=1,
                                warmup_expect=None, warmup_self_teacher_tolerance=None)
    losses: list[str] = []
    rt = build_student(at, cfg, load_dataset(data_spec(cfg)), cache_dir=None,
                       progress=lambda _label, _step, _steps, loss: losses.append(repr(float(loss))))
    return {"student": cfg.students[at].name, "build_seed": build_seed, "threads": threads, "steps": len(losses),
            "losses": losses, "weights_sha256": tensors_digest(rt.model.state_dict()),
            "torch_threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}


def _probe_task(args: tuple) -> dict:
    return probe(*args)


def run_probe(build_seeds: list[int], threads: list[int], steps: int, jobs: int = 2, log=print,
              specialists: tuple[str, ...] | None = None) -> list[dict]:
    """``probe`` for every build seed, specialist (``specialists``' strong domains; default all three) and
    thread count, each in its own spawned process (the pinned float path is inherited through the
    environment); one result per (specialist, build seed) comparing the thread counts."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from opcod_core.presets import WORLD3_DOMAINS

    domains = specialists or WORLD3_DOMAINS
    tasks = [(seed, strong, t, steps) for seed in build_seeds for strong in domains for t in threads]
    # one process per task (max_tasks_per_child): a thread count is never changed inside a process
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        results = list(pool.map(_probe_task, tasks))
    out = []
    for seed in build_seeds:
        for strong in domains:
            mine = [r for r, task in zip(results, tasks) if task[0] == seed and task[1] == strong]
            out.append(compare_probes(mine))
            log(f"  probe seed {seed} {out[-1]['student']}: threads {out[-1]['threads']} "
                + ("identical" if out[-1]["identical"] else f"part at step {out[-1]['first_difference']}"))
    return out
