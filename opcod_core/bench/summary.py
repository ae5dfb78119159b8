"""The result paragraph of a benchmark report, derived from the report's results JSON alone.

Why: a paragraph a person writes in the README drifts from the numbers. It is written once, the
benchmark is re-run or re-analysed, and the prose keeps the old verdict. This paragraph is a function
of the JSON that the report is written from. The report puts it near its top, and ``opcod bench readme``
(``opcod_core.bench.readme_sync``) puts the same paragraph between marker comments in the README. So the
two say the same thing, and ``--check`` tells when the README no longer does.

What it states and where each part comes from:

* **pairs** (``opcod bench fidelity``): per pair and student, the two pre-registered primary comparisons
  (``opcod_core.bench.primary``) with their paired mean difference, 95% interval and the verdict the JSON
  holds; how many of those verdicts hold; how many students OPCoD Pareto-improved beyond noise (the
  aggregate's verdict, ``stats.verdict``: "improved on ..." is an interval above 0 with none below);
  the seeds, the learning rate (and τ) and whether validation chose them, the wall time and a link.
* **trio** (``--mode trio``): trio − pair per student, domain and pair, paired by seed, with the verdicts
  of ``trio_analysis.trio_vs_pairs``; the two claims of the poisoned variant with the verdicts of
  ``trio_analysis.claims``; the seeds, the wall time and a link.

Nothing is computed here that the JSON or the benchmark's own analysis does not give: the statements
count and quote verdicts, never re-derive them. A JSON without a piece (an older report: the v2 JSON has
no runs and no primary comparisons) gives a shorter paragraph, never an invented one. Sentences go one
per line and each starts with a fixed word, so the paragraph stays one Markdown paragraph.
"""

from __future__ import annotations

import shlex
from collections import Counter

from opcod_core.bench.stats import signed

PAIRS_KIND = "fidelity-pairs"
TRIO_KIND = "fidelity-trio"

COMPARISON_TEXT = {"help": "help (OPCoD − never-give on the weak domain)",
                   "harm": "harm (OPCoD − always-give on the strong domain)"}
ONE_SEED = "has no interval (1 seed)"


def kind_of(results: object) -> str | None:
    """The report's kind: its ``kind`` field, or for a JSON written before that field its shape (a trio
    report has ``mode: trio``; a pairs report has ``plan`` and ``pairs``). None: not a benchmark report."""
    if not isinstance(results, dict):
        return None
    if results.get("kind") in (PAIRS_KIND, TRIO_KIND):
        return results["kind"]
    if "kind" in results:
        return None
    if results.get("mode") == "trio" and "runs" in results:
        return TRIO_KIND
    if isinstance(results.get("pairs"), dict) and isinstance(results.get("plan"), dict):
        return PAIRS_KIND
    return None


def _seeds(seeds: list[int]) -> str:
    """``0–4`` for a run of three or more consecutive seeds, else the list."""
    s = sorted(seeds)
    if len(s) >= 3 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s))


def _plural_seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {_seeds(seeds)}"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _header(results: dict, report_path: str, details: list[str]) -> list[str]:
    """The first sentence (link, details, seeds, wall time) and, for a quick run, the warning."""
    if "wall_s" in results:
        details = details + [f"wall time {results['wall_s'] / 60:.1f} min, not counting runs read from the "
                             "result cache"]
    compute = run_compute(results)
    if compute:
        details = details + [compute]
    lines = [f"Result of [{report_path}]({report_path})" + (f" ({'; '.join(details)})." if details else ".")]
    if _quick(results):
        lines.append("Quick mode: a pipeline check, not evidence of anything.")
    return lines


def _all_runs(results: dict) -> list[dict]:
    """Every run of a results JSON: a pairs report keeps them per pair, a trio report in one list."""
    pairs = results.get("pairs")
    if isinstance(pairs, dict):
        return [r for pr in pairs.values() for r in pr.get("runs") or []]
    return list(results.get("runs") or [])


def cache_note(results: dict) -> str:
    """How many of the runs this invocation read from the result cache (they cost it no wall time)."""
    runs = _all_runs(results)
    n = sum(1 for r in runs if r.get("cached"))
    return f"{n} of {len(runs)} runs read from the result cache, which add nothing to this wall time"


def run_compute(results: dict) -> str | None:
    """The runs' own compute, cached runs included (a benchmark resumed over several sessions reads most
    of its runs from the result cache, so the last invocation's wall time says little about its cost)."""
    walls = [r["wall_s"] for r in _all_runs(results) if "wall_s" in r]
    if not walls:
        return None
    return f"compute {sum(walls) / 3600:.1f} h summed over the {len(walls)} runs, each timed on its own"


def _quick(results: dict) -> bool:
    """Whether the run was a quick one: the trio's plan says so; a pairs report's recorded command does."""
    if (results.get("plan") or {}).get("quick"):
        return True
    try:
        return "--quick" in shlex.split(results.get("command") or "")
    except ValueError:
        return False


# --- pairs ----------------------------------------------------------------------------------------------
def _pairs_seeds(plan: dict) -> str | None:
    """The seeds, per group of methods when the methods ran at different seeds (``--baseline-seeds``)."""
    by = plan.get("seeds_by_method") or {}
    if by and len({tuple(s) for s in by.values()}) > 1:
        groups: dict[tuple, list[str]] = {}
        for method, seeds in by.items():
            groups.setdefault(tuple(seeds), []).append(method)
        return "; ".join(f"{_plural_seeds(list(s))} for {', '.join(ms)}" for s, ms in groups.items())
    seeds = next(iter(by.values()), None) or plan.get("seeds")
    return _plural_seeds(seeds) if seeds else None


def _verdict_class(verdict: str) -> str:
    """The verdict of a primary comparison as a phrase: ``holds``, ``fails``, ``is not resolved``, or
    without an interval (one seed); a verdict of another form is quoted as it stands."""
    if "1 seed" in verdict:
        return ONE_SEED
    head = verdict.split(":")[0].split(" (")[0]
    return {"holds": "holds", "fails": "fails", "not resolved": "is not resolved"}.get(head, f"is “{verdict}”")


def _tally(rows: list[dict], comparison: str, first: bool) -> str | None:
    """``help holds for 2 of 6 students, fails for 1 and is not resolved for 3``, counted from verdicts."""
    mine = [r for r in rows if r["comparison"] == comparison]
    if not mine:
        return None
    counts = Counter(_verdict_class(r["verdict"]) for r in mine)
    parts = [f"holds for {counts.pop('holds', 0)} of {len(mine)}{' students' if first else ''}"]
    parts += [f"{cls} for {n}" for cls, n in counts.items()]
    return f"{COMPARISON_TEXT[comparison]} {_and(parts)}"


def chosen_anchor(pr: dict) -> float | None:
    """The KL anchor the pair's runs used, when its selection was over rates and anchors (else None)."""
    cfg = pr.get("config") or {}
    if "loss" not in cfg or not any("KL anchor" in k for k in pr.get("lr_selection") or {}):
        return None
    return float(cfg["loss"].get("kl_anchor", 0.0))


def chosen_label(pr: dict) -> str | None:
    """The selection row the pair's runs used, as the selection labels it ("0.0001 / KL anchor 0.1")."""
    cfg = pr.get("config") or {}
    if "optim" not in cfg or not pr.get("lr_selection"):
        return None
    anchor = chosen_anchor(pr)
    return f"{cfg['optim']['lr']:g}" + ("" if anchor is None else f" / KL anchor {anchor:g}")


def _pair_sentence(key: str, pr: dict) -> str:
    """The pair's settings and, per student, its primary comparisons with the JSON's verdicts."""
    cfg = pr.get("config") or {}
    settings = []
    if "optim" in cfg:
        anchor = chosen_anchor(pr)
        anchor = "" if anchor is None else f" and KL anchor {anchor:g}"
        settings.append(f"learning rate {cfg['optim']['lr']:g}{anchor}" +
                        (" chosen on validation" if pr.get("lr_selection") else ""))
    if "gating" in cfg:
        settings.append(f"τ = {cfg['gating']['tau']:g}" + (" chosen on validation" if pr.get("tau_selection") else ""))
    head = f"In {key}" + (f" ({', '.join(settings)})" if settings else "")
    students = []
    for name in pr.get("students") or []:
        rows = [r for r in pr.get("primary") or [] if r["student"] == name]
        if rows:
            students.append(f"{name} " + ", ".join(
                f"{r['comparison']} {signed(r['interval'])} on {r['domain']}: {r['verdict']}" for r in rows))
    return head + (": " + "; ".join(students) if students else "") + "."


def _pareto_sentence(pairs: dict) -> str | None:
    """How many students OPCoD Pareto-improved beyond noise, read from the aggregate's verdicts."""
    verdicts = [(key, name, st["verdict"]) for key, pr in pairs.items()
                for name, st in (((pr.get("aggregate") or {}).get("opcod") or {}).get("students") or {}).items()]
    if not verdicts:
        return None
    improved = [f"{name} in {key}" for key, name, v in verdicts if v.startswith("improved on ")]
    text = f"OPCoD Pareto-improved {len(improved)} of {len(verdicts)} students beyond noise"
    if improved:
        text += f" ({', '.join(improved)})"
    if any("(1 seed)" in v for _, _, v in verdicts):
        text += " (1 seed: no intervals, so none can be told from noise)"
    return text + "."


def fidelity_summary(results: dict, report_path: str) -> str:
    """The result paragraph of a pairs report (``opcod bench fidelity``; module docstring)."""
    plan, pairs = results.get("plan") or {}, results.get("pairs") or {}
    details = [f"world {plan['world']}"] if plan.get("world") else []
    if pairs:
        details.append(f"pair{'s' if len(pairs) != 1 else ''} {', '.join(pairs)}")
    seeds = _pairs_seeds(plan)
    if seeds:
        details.append(seeds)
    lines = _header(results, report_path, details)
    rows = [r for pr in pairs.values() for r in pr.get("primary") or []]
    tallies = [t for t in (_tally(rows, "help", True), _tally(rows, "harm", False)) if t]
    if tallies:
        lines.append("Pre-registered primary comparisons (final test accuracy, paired by seed, 95% interval): "
                     + "; ".join(tallies) + ".")
    lines += [_pair_sentence(key, pr) for key, pr in pairs.items()]
    pareto = _pareto_sentence(pairs)
    if pareto:
        lines.append(pareto)
    return "\n".join(lines)


# --- trio -----------------------------------------------------------------------------------------------
TRIO_VERDICT_TEXT = {"1 seed: no interval": "without an interval (1 seed)"}


def _trio_analysis(results: dict) -> dict:
    """The analysis the report was written from (saved in the JSON), or the same analysis of its runs."""
    if results.get("analysis") is not None:
        return results["analysis"]
    if "runs" not in results:
        return {}
    from opcod_core.bench.trio_analysis import analyse

    return analyse(results)


def _trio_vs_pairs(rows: list[dict], students: list[str]) -> list[str]:
    """The tally of the trio − pair verdicts, then one sentence per student."""
    if not rows:
        return []
    counts = Counter(r["verdict"] for r in rows)
    lines = [f"Trio − pair, final test accuracy of a student on a domain, paired by seed: of {len(rows)} "
             "comparisons, " + _and([f"{n} {TRIO_VERDICT_TEXT.get(v, v)}" for v, n in counts.items()]) + "."]
    for name in students or list(dict.fromkeys(r["student"] for r in rows)):
        mine = [r for r in rows if r["student"] == name]
        if mine:
            lines.append(f"Student {name}: " + "; ".join(
                f"{r['domain']} against the pair with {r['partner']} {signed((r['difference'] or {}).get('interval'))}"
                f" ({r['verdict']})" for r in mine) + ".")
    return lines


def _poison_lines(poison: dict | None, claims: dict | None) -> list[str]:
    """The poisoned variant's setting and its two pre-registered claims with ``trio_analysis.claims``'s verdicts."""
    if not poison or not claims:
        return []
    tutor = poison["tutor"]
    lines = [f"Poisoned variant: {tutor}'s feedback corrupted from global step {poison['from_step']}"
             + (f" of {poison['total_steps']}" if "total_steps" in poison else "")
             + (f", auto-quarantine threshold {poison['threshold']:g}" if poison.get("threshold") is not None else "")
             + (f" with trust.recent = {poison['recent']}" if poison.get("recent") else "")
             + "."]
    within = claims.get("quarantined_within")
    if within:
        lines.append(f"Claim 1, {tutor} is quarantined within {within['bound']} steps of the poison at every seed "
                     f"(auto-quarantine on): {within['verdict']}.")
    noise = claims.get("others_within_noise")
    if noise:
        lines.append("Claim 2, no other student's final accuracy on any domain falls beyond noise (quarantine on − "
                     f"clean trio): {noise['verdict']}.")
    return lines


def trio_summary(results: dict, report_path: str) -> str:
    """The result paragraph of a trio report (``opcod bench fidelity --mode trio``; module docstring)."""
    plan = results.get("plan") or {}
    details = [f"trio gating {plan['gating']}"] if plan.get("gating") else []
    if plan.get("seeds"):
        details.append(_plural_seeds(plan["seeds"]))
    lines = _header(results, report_path, details)
    analysis = _trio_analysis(results)
    lines += _trio_vs_pairs(analysis.get("trio_vs_pairs") or [], results.get("students") or [])
    lines += _poison_lines(results.get("poison"), analysis.get("claims"))
    lines += _replay_lines(results.get("poison"), analysis.get("replay"))
    return "\n".join(lines)


def _replay_lines(poison: dict | None, replay: dict | None) -> list[str]:
    """The recent-window replay (``trio_analysis.replay_recent``): when it would have quarantined the poisoned
    tutor at each seed, claim 1 under it, and its false alarms."""
    if not poison or not replay:
        return []
    tutor = poison["tutor"]
    steps = [f"seed {r['seed']} {r['steps_after_poison'] if r['steps_after_poison'] is not None else 'never'}"
             for r in replay["rows"] if r["variant"] == "trio-poison-off"]
    return [f"Recent-window rule replayed (trust.recent = {replay['recent']}): {tutor} quarantined this many steps "
            f"after the poison: {', '.join(steps)}; claim 1 under it: {replay['verdict']}; false alarms: "
            f"{', '.join(replay['false_alarms']) or 'none'}."]


SUMMARIES = {PAIRS_KIND: fidelity_summary, TRIO_KIND: trio_summary}
SUMMARY_HEADING = "## Summary (generated from this report's JSON)"


def summary_section(paragraph: str) -> list[str]:
    """The report's lines of the summary: the heading, the paragraph, a blank line."""
    return [SUMMARY_HEADING, "", paragraph, ""]
