"""Aggregates the fidelity benchmark's runs per method: intervals over seeds, gates, feedback, breaks.

Per method and student: the 95% interval over seeds (``stats.interval``) of the initial and final test
accuracy and of the change per domain, the number of seeds with a Pareto improvement and the verdict
read from the intervals. Per method: gate decisions per round and student, anchoring categories per
tutor, the break rate P(wrong with f | right without f) per tutor and cognizance and per tutor, domain
and cognizance (counts summed over seeds, never rates averaged), mean per-token divergence per
(tutee, domain, teacher context), the mean final weight distance ‖θ − θ₀‖ and the summed wall time.
"""

from __future__ import annotations

from opcod_core.bench.stats import interval, pareto, verdict
from opcod_core.breakrate import break_counts


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
        breaks, breaks_by_domain = _break_tables(rs)
        div: dict = {}
        for r in rs:
            for k, v in r["divergence"].items():
                n = r["divergence_n"][k]
                acc = div.setdefault(k, [0.0, 0])
                acc[0] += v * n
                acc[1] += n
        l2 = [v for r in rs for v in (r.get("weight_l2") or {}).values()]
        out[method] = {"students": per_student, "gates": gates, "categories": cats, "breaks": breaks,
                       "breaks_by_domain": breaks_by_domain, "weight_l2": sum(l2) / len(l2) if l2 else None,
                       "divergence": {k: {"mean": s / n, "n": n} for k, (s, n) in div.items()},
                       "wall_s": sum(r["wall_s"] for r in rs)}
    return out


def _counts(samples) -> dict | list[int]:
    """``break_counts`` of the samples; results saved before the conditional definition (samples without
    ``correct_without_f``) keep their old form [broken, samples], which the report labels as such."""
    samples = list(samples)
    if samples and "correct_without_f" not in samples[0]:
        return [sum(bool(b["broken"]) for b in samples), len(samples)]
    return break_counts(samples)


def _break_tables(rs: list[dict]) -> tuple[dict, dict]:
    """tutor -> cognizant|incognizant -> counts, and tutor -> domain -> cognizance -> counts, over every
    seed's samples: the conditional rate P(wrong with f | right without f) = broken / eligible, counts
    summed, never rates averaged (results written before break events named their domain: no domain table)."""
    breaks: dict = {}
    by_domain: dict = {}
    for tutor in sorted({b["tutor"] for r in rs for b in r["breaks"]}):
        mine = [b for r in rs for b in r["breaks"] if b["tutor"] == tutor]
        breaks[tutor] = {c: _counts(b for b in mine if b["cognizant"] == (c == "cognizant"))
                         for c in ("cognizant", "incognizant")}
        for dom in sorted({b.get("domain") for b in mine} - {None}):
            by_domain.setdefault(tutor, {})[dom] = {
                c: _counts(b for b in mine if b.get("domain") == dom and b["cognizant"] == (c == "cognizant"))
                for c in ("cognizant", "incognizant")}
    return breaks, by_domain
