"""Does a v3 specialist's build depend on the torch thread count? (the fidelity issue, point 5)

A different thread count can change the order of a reduction, and so the last bits of the floats, the
way another CPU's kernels do; a warm-up of thousands of steps at a high learning rate can amplify those
bits into another student. The benchmarks pin the float path (``floatpath``), and whether that pin also
makes the build independent of the thread count is a question for measurement, answered two ways here:

* **whole builds**: a build's row keeps the digest of the student it cached (``weights_sha256``, the
  SHA-256 of its saved tensors in name order); two builds of one specialist and build seed under
  different thread counts are the same student iff the digests are equal (``thread_lines``). A build
  that missed caches nothing, and is compared by what it measured and what its warm-up did instead;
* **a probe** (``opcod bench students --probe-steps N``, run by ``students.run_probe``): the first N warm-up steps of every specialist's
  first attempt, under each thread count in its own spawned process, compared step by step (every
  step's training loss, exactly) and by the weights after them. It takes minutes where the builds take
  hours, and says at which step, if any, two thread counts first part.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def tensors_digest(tensors: dict) -> str:
    """SHA-256 of the tensors' bytes in name order (the same floats give the same digest)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def student_digest(student_dir: Path) -> str | None:
    """The digest of a cached student's saved tensors (``model.safetensors``), or None when there is none."""
    path = Path(student_dir) / "model.safetensors"
    if not path.exists():
        return None
    from safetensors.torch import load_file

    return tensors_digest(load_file(str(path)))


def thread_lines(rows: list[dict]) -> list[str]:
    """Per specialist and build seed built under more than one thread count: are the builds the same?"""
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault((r["student"], r["build_seed"]), {})[r["threads"]] = r
    compared = {k: v for k, v in sorted(groups.items()) if len(v) > 1}
    if not compared:
        return []
    lines = ["", "Does the build depend on the torch thread count (`threads_check`)? Builds that passed are "
             "compared by the digest of the student they cached, builds that missed by what they measured and "
             "what their warm-up did:", "", "| specialist | build seed | threads | compared by | same build |",
             "|---|---|---|---|---|"]
    for (name, seed), by_threads in compared.items():
        builds = [by_threads[t] for t in sorted(by_threads)]
        digests = [b.get("weights_sha256") for b in builds]
        if all(digests):
            how, same = "weights", len(set(digests)) == 1
        else:
            how = "measured split and warm-up record"
            same = len({json.dumps([b["passed"], b["measured"], b.get("warmup")], sort_keys=True) for b in builds}) == 1
        lines.append(f"| {name} | {seed} | {', '.join(str(t) for t in sorted(by_threads))} | {how} | "
                     f"{'yes' if same else 'NO'} |")
    return lines


def compare_probes(probes: list[dict]) -> dict:
    """One specialist's probes under several thread counts: identical (every loss and the final weights)
    or the first step (1-based) at which a loss differs from the first thread count's."""
    first = probes[0]
    parted = [next((i + 1 for i, (a, b) in enumerate(zip(first["losses"], p["losses"])) if a != b), None)
              for p in probes[1:]]
    steps_differ = any(len(p["losses"]) != len(first["losses"]) for p in probes[1:])
    same_weights = all(p["weights_sha256"] == first["weights_sha256"] for p in probes[1:])
    known = [s for s in parted if s is not None]
    return {"student": first["student"], "build_seed": first["build_seed"], "threads": [p["threads"] for p in probes],
            "steps": first["steps"], "identical": not known and not steps_differ and same_weights,
            "first_difference": min(known) if known else None, "same_weights": same_weights,
            "first_losses": first["losses"][:3], "mean_loss": round(sum(map(float, first["losses"])) / len(first["losses"]), 4),
            "capability": sorted({p["capability"] for p in probes})}


def first_window(rows: list[dict], student: str, build_seed: int, threads: int) -> float | None:
    """The mean loss of the first recorded window (``build.LOSS_CURVE_WINDOW`` steps) of a build's first
    attempt, from its row: the attempt that passed if it was the first, else the first discarded one."""
    for r in rows:
        if (r["student"], r["build_seed"], r["threads"]) != (student, build_seed, threads):
            continue
        warm = r.get("warmup") or {}
        first = warm if warm.get("attempt", 0) == 0 else next(
            (d for d in warm.get("discarded", ()) if d.get("attempt") == 0), {})
        curve = first.get("loss_curve") or []
        return curve[0] if curve else None
    return None


def probe_lines(path: Path, rows: list[dict] = ()) -> list[str]:
    """The probe's section of the students report, from its JSON (``write_probe``), if there is one. With
    ``rows`` and a probe of one loss window: does the probe follow the build (its mean loss against the
    first window of the build's first attempt, to the row's 4 decimals)?"""
    from opcod_core.build import LOSS_CURVE_WINDOW

    if not Path(path).exists():
        return []
    data = json.loads(Path(path).read_text())
    window = data["steps"] == LOSS_CURVE_WINDOW
    lines = ["", f"Probe (`{data['command']}`, {data['machine']}): the first {data['steps']} warm-up steps of each "
             "specialist's first attempt under each thread count, compared step by step (every training loss, "
             "exactly) and by the weights after them" + (
                 "; the probe's mean loss against the build row's first window (the same steps of the same attempt "
                 "at one thread: equal when the probe follows the build)" if window else "") + ":", "",
             "| specialist | build seed | threads | steps | every loss equal | weights equal | first step that differs |"
             + (" probe's mean loss | build's first window |" if window else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if window else "")]
    for r in data["results"]:
        line = (f"| {r['student']} | {r['build_seed']} | {', '.join(map(str, r['threads']))} | {r['steps']} | "
                f"{'no' if r['first_difference'] else 'yes'} | {'yes' if r['same_weights'] else 'no'} | "
                f"{r['first_difference'] or '–'} |")
        if window:
            built = first_window(rows, r["student"], r["build_seed"], 1)
            line += f" {r['mean_loss']:.4f} | {'–' if built is None else f'{built:.4f}'} |"
        lines.append(line)
    return lines


def write_probe(results: list[dict], path: Path, command: str, machine: str, steps: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, "machine": machine, "steps": steps, "results": results}, indent=1))
    return path
