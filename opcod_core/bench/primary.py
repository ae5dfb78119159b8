"""The fidelity benchmark's two pre-registered primary comparisons per student, paired by seed.

Why pre-registered: with six methods, two students, two domains and several seeds, some difference
will look significant by chance; the report names in advance the two that test the paper's claims and
labels everything else secondary. For a student S with strong domain A and weak domain B:

* **help** = OPCoD − never-give on B (final test accuracy): does peer tutoring teach S the domain it
  lacks, beyond what self-distillation on its own correct siblings does?
* **harm** = OPCoD − always-give on A: does the cognizance gate keep S's strong domain from being
  damaged by an incognizant peer's feedback, compared with taking all feedback?

Paired by seed: a seed fixes the data order, the rollouts' random streams and the evaluation samples
(common random numbers), so the difference of two methods at the same seed removes most of the
between-seed variance. The interval is Student's t over the per-seed differences (``stats.interval``);
a comparison *holds* when the interval lies above 0, *fails* when it lies below 0, and is *not resolved*
when it contains 0 (with one seed there is no interval and the verdict says so).
"""

from __future__ import annotations

from opcod_core.bench.stats import TOL, interval

COMPARISONS = (("help", "never", "weak"), ("harm", "always", "strong"))


def _finals(runs: list[dict], method: str, name: str, domain: str) -> dict[int, float]:
    return {r["seed"]: r["summary"]["students"][name]["final"][domain] for r in runs if r["method"] == method}


def primary_comparisons(runs: list[dict], names: list[str], strong: dict[str, str], domains: list[str]) -> list[dict]:
    """One row per (student, comparison): the per-seed differences, their interval and the verdict.
    Rows whose methods were not run are left out."""
    rows = []
    for name in names:
        a = strong[name]
        b = next(d for d in domains if d != a)
        for label, other, which in COMPARISONS:
            domain = b if which == "weak" else a
            mine, theirs = _finals(runs, "opcod", name, domain), _finals(runs, other, name, domain)
            seeds = sorted(set(mine) & set(theirs))
            if not seeds:
                continue
            diffs = [mine[s] - theirs[s] for s in seeds]
            iv = interval(diffs)
            if iv.half is None:
                verdict = f"{'+' if iv.mean > TOL else '-' if iv.mean < -TOL else '0'} (1 seed: no interval)"
            elif iv.low > TOL:
                verdict = "holds"
            elif iv.high < -TOL:
                verdict = "fails: OPCoD is worse"
            else:
                verdict = "not resolved (interval contains 0)"
            rows.append({"student": name, "comparison": label, "against": other, "domain": domain,
                         "domain_role": which, "seeds": seeds, "differences": diffs, "interval": iv.to_dict(),
                         "opcod": sum(mine[s] for s in seeds) / len(seeds),
                         "baseline": sum(theirs[s] for s in seeds) / len(seeds), "verdict": verdict})
    return rows
