"""The report of ``opcod bench students`` (``opcod_core.bench.students``): per specialist and domain the
plain validation accuracy of every build (seed, threads) against its intended interval, the self-teacher
with a correct s, whether each pair's gate tells its two tutors apart, whether the thread count changes a
build (``threads_check``), and each build's warm-up."""

from __future__ import annotations

import json
from pathlib import Path

from opcod_core.bench.threads_check import probe_lines, thread_lines

ROLES = ("strong", "partial", "weak", "unknown")


def warm_text(w: dict) -> str:
    if not w:
        return "not recorded"
    decay = f", decay from step {w['decay_start']}" if w.get("decay_start") is not None else ""
    text = f"{w.get('steps')} steps{decay}, final loss {w.get('final_loss', float('nan')):.3f}"
    if "attempt" not in w:
        return text
    discarded = [f"attempt {d['attempt'] + 1} " + (
        f"given up unconverged at step {d['steps']} (loss {d.get('final_loss', float('nan')):.3f})" if d.get("gave_up")
        else "missed (" + ", ".join(f"{dom} {v:.3f}" for dom, v in (d.get("measured") or {}).items()) + ")")
        for d in w.get("discarded", ())]
    return f"attempt {w['attempt'] + 1}: {text}" + (f"; before it: {'; '.join(discarded)}" if discarded else "")


def pair_gaps(rows: list[dict], tau: float = 0.2) -> list[dict]:
    """Does the gate tell each pair's two tutors apart? Per build (seed, threads) and pair (A, B) of
    ``WORLD3_PAIRS``: A knows B's domain partly (the cognizant tutor, meant to be let through) and B is weak
    on A's (the incognizant tutor, whose wrong feedback is the harm the gate is there to block). The gate
    (``opcod_core.gating``) lets a student tutor iff its gap Delta = sum over the pair's domains d of
    (s*_d - s_d) / s*_d is at most tau, with s*_d the better of the two on d. The per-student build check
    cannot see this (it needs the other student), so it is checked here, on the build check's plain
    validation accuracies (avg@4, not the gate's own avg@8 at run time: an estimate of the decision, close
    to the threshold a coin flip). ``intended``: the cognizant tutor's gate opens, the incognizant's stays
    shut."""
    from opcod_core.gating import cognizance_gap
    from opcod_core.presets import WORLD3_NAMES, WORLD3_PAIRS

    out = []
    for b in sorted({(r["build_seed"], r["threads"]) for r in rows}):
        mine = {r["student"]: r["measured"] for r in rows if (r["build_seed"], r["threads"]) == b}
        for a, d in WORLD3_PAIRS:
            na, nb = WORLD3_NAMES[a], WORLD3_NAMES[d]
            if na not in mine or nb not in mine:
                continue
            scores = {na: {x: mine[na].get(x, 0.0) for x in (a, d)}, nb: {x: mine[nb].get(x, 0.0) for x in (a, d)}}
            gaps = cognizance_gap(scores)
            for tutor, tutee, domain, cognizant in ((na, nb, d, True), (nb, na, a, False)):
                opens = gaps[tutor] <= tau + 1e-9
                out.append({"build": b, "tutor": tutor, "tutee": tutee, "domain": domain, "cognizant": cognizant,
                            "tutor_score": scores[tutor][domain],
                            "best": max(scores[na][domain], scores[nb][domain]), "delta": gaps[tutor],
                            "opens": opens, "intended": opens == cognizant})
    return out


def gate_lines(rows: list[dict], builds: list, tau: float = 0.2) -> list[str]:
    gaps = pair_gaps(rows, tau)
    if not gaps:
        return []
    lines = ["", f"Does the gate tell each pair's tutors apart (Delta <= tau = {tau:g} opens it, `pair_gaps`)? The "
             "cognizant tutor's gate is meant to open, the incognizant's to stay shut; a build in which both open "
             "has no harm for the gate to block.", "",
             "| build | tutor -> tutee | domain | tutor | tutor's score | best score | Delta | gate | as intended |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in gaps:
        lines.append(f"| s{g['build'][0]} t{g['build'][1]} | {g['tutor']} -> {g['tutee']} | {g['domain']} | "
                     f"{'cognizant' if g['cognizant'] else 'incognizant'} | "
                     f"{g['tutor_score']:.3f} | {g['best']:.3f} | {g['delta']:.3f} | "
                     f"{'opens' if g['opens'] else 'stays shut'} | {'yes' if g['intended'] else 'NO'} |")
    return lines


def self_teacher_lines(rows: list[dict], builds: list) -> list[str]:
    """Per specialist and own domain: plain / with a correct s for every build, and how many builds kept
    the self-teacher within the tolerance (the build check, ``opcod_core.build_check``)."""
    checked = [r for r in rows if r.get("self_teacher")]
    if not checked:
        return []
    lines = ["", "The self-teacher on its own domain: plain / with a correct solution s in context (validation "
             "avg@4; the build fails when with s trails plain by more than the tolerance):", "",
             "| specialist | domain | tolerance | " + " | ".join(f"s{s} t{t}" for s, t in builds)
             + " | largest shortfall | builds within |", "|---|---|---|" + "---|" * len(builds) + "---|---|"]
    for name in sorted({r["student"] for r in checked}):
        mine = {(r["build_seed"], r["threads"]): r for r in checked if r["student"] == name}
        first = next(iter(mine.values()))
        tol = first.get("self_teacher_tolerance")
        for d in first["self_teacher"]:
            gaps = [m["measured"][d] - m["self_teacher"][d] for m in mine.values()]
            cells = [f"{mine[b]['measured'][d]:.3f} / {mine[b]['self_teacher'][d]:.3f}" if b in mine else "–"
                     for b in builds]
            within = sum(tol is None or g <= tol for g in gaps)
            lines.append(f"| {name} | {d} | {'–' if tol is None else f'{tol:g}'} | " + " | ".join(cells)
                         + f" | {max(gaps):+.3f} | {within}/{len(gaps)} |")
    return lines


def probe_path(report: Path) -> Path:
    """Where the thread probe of a students report is kept (``threads_check.write_probe``)."""
    return Path(report).with_name(f"{Path(report).stem}-threads-probe.json")


def write_spread_report(rows: list[dict], path: Path, command: str, machine: str) -> Path:
    path = Path(path)
    builds = sorted({(r["build_seed"], r["threads"]) for r in rows})
    lines = ["# Version-3 specialists: the knowledge split across build seeds and torch thread counts", "",
             "Generated by `opcod bench students`; every number comes from the JSON next to this file.", "",
             f"- Command: `{command}`", f"- Machine: {machine}",
             f"- Builds: {len(builds)} (build seed, threads) = {builds}; each specialist warmed up "
             f"{rows[0]['steps'] if rows else '?'} steps, measured by plain avg@4 on the whole validation split",
             "", "| specialist | domain (role) | intended | " + " | ".join(f"s{s} t{t}" for s, t in builds)
             + " | spread (min–max) | builds in interval |", "|---|---|---|" + "---|" * len(builds) + "---|---|"]
    for name in sorted({r["student"] for r in rows}):
        mine = {(r["build_seed"], r["threads"]): r for r in rows if r["student"] == name}
        first = next(iter(mine.values()))
        for d, role in sorted(first["roles"].items(), key=lambda kv: ROLES.index(kv[1])):
            vals = [mine[b]["measured"].get(d) for b in builds if b in mine]
            lo, hi = first["expect"].get(d, [0.0, 1.0])
            ok = sum(v is not None and lo <= v <= hi for v in vals)
            cells = [f"{mine[b]['measured'][d]:.3f}" if b in mine else "–" for b in builds]
            lines.append(f"| {name} | {d} ({role}) | [{lo:g}, {hi:g}] | " + " | ".join(cells)
                         + f" | {min(vals):.3f}–{max(vals):.3f} | {ok}/{len(vals)} |")
    lines += self_teacher_lines(rows, builds)
    lines += gate_lines(rows, builds)
    lines += thread_lines(rows)
    lines += probe_lines(probe_path(path), rows)
    lines += ["", "Each build's warm-up (steps run; with the converge schedule, the step its decay began; the "
              "mean loss of its last 50 steps; wall time):", ""]
    lines += [f"- {r['student']} s{r['build_seed']} t{r['threads']}: {warm_text(r.get('warmup') or {})}, "
              f"{r['build_s']:.0f} s" for r in rows]
    lines.append("")
    notes = path.with_name(f"{path.stem}-notes.md")
    if notes.exists():
        lines += ["## Discussion", "", notes.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=1))
    return path
