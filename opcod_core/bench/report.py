"""Writes the fidelity report: a Markdown file with every table and a Pareto plot PNG per domain pair.

The plot has one panel per student: x = accuracy on domain A, y = accuracy on domain B (test split),
the initial point, and each method's final point with its 95% interval over seeds as error bars; the
dashed lines through the initial point bound the Pareto-improvement quadrant (up and/or right).
Every number in the Markdown comes from the results dict; nothing is typed in by hand. The summary paragraph
after the protocol is ``opcod_core.bench.summary``'s, the same that ``opcod bench readme`` puts in the README.
"""

from __future__ import annotations

import platform
from pathlib import Path

from opcod_core.bench.stats import Interval, signed
from opcod_core.bench.summary import cache_note, chosen_label, fidelity_summary, run_compute, summary_section

COLORS = {"opcod": "tab:red", "never": "tab:blue", "always": "tab:orange", "domain_selective": "tab:green",
          "grpo": "tab:purple", "one_way": "tab:brown"}


def _iv(d: dict) -> Interval:
    return Interval(d["mean"], d["half"], d["n"])


def plot_pair(pair_key: str, pr: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = pr["domains"]
    fig, axes = plt.subplots(1, len(pr["students"]), figsize=(5.2 * len(pr["students"]), 4.6))
    for ax, name in zip(axes, pr["students"], strict=True):
        first = next(iter(pr["aggregate"].values()))["students"][name]
        ix, iy = _iv(first["initial"][a]), _iv(first["initial"][b])
        ax.axvline(ix.mean, color="grey", ls="--", lw=0.8)
        ax.axhline(iy.mean, color="grey", ls="--", lw=0.8)
        ax.errorbar([ix.mean], [iy.mean], xerr=[[ix.half or 0]], yerr=[[iy.half or 0]], fmt="ks", ms=8,
                    label="initial", capsize=3)
        for method, agg in pr["aggregate"].items():
            st = agg["students"][name]
            fx, fy = _iv(st["final"][a]), _iv(st["final"][b])
            ax.errorbar([fx.mean], [fy.mean], xerr=[[fx.half or 0]], yerr=[[fy.half or 0]], fmt="o", ms=7,
                        color=COLORS.get(method), label=method, capsize=3, alpha=0.9)
        ax.set_xlabel(f"{a} test accuracy")
        ax.set_ylabel(f"{b} test accuracy")
        ax.set_title(f"student {name} (strong: {pr['strong'][name]})")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(f"Pareto plot, {pair_key} (mean and 95% interval over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _world_table(pr: dict) -> list[str]:
    first = pr["world"][pr["students"][0]][pr["domains"][0]]
    if "with_s" in first:   # self-teacher with s, with f, with s+f (reports from the v3 benchmark on)
        lines = ["| student (strong) | domain | plain | with s | with f (reference hint) | with s+f | "
                 "with peer's kept f | peer kept rate | items |", "|---|---|---|---|---|---|---|---|---|"]
        for name in pr["students"]:
            for d in pr["domains"]:
                w = pr["world"][name][d]
                lines.append(f"| {name} ({pr['strong'][name]}) | {d} | {w['plain']:.3f} | {w['with_s']:.3f} | "
                             f"{w['reference_hint']:.3f} | {w['with_s_f']:.3f} | {w['peer_hint']:.3f} | "
                             f"{w['peer_kept_rate']:.2f} | {w['n_items']} |")
        return lines
    lines = ["| student (strong) | domain | plain | with peer's kept hint | with reference hint | peer kept rate | items |",
             "|---|---|---|---|---|---|---|"]
    for name in pr["students"]:
        for d in pr["domains"]:
            w = pr["world"][name][d]
            lines.append(f"| {name} ({pr['strong'][name]}) | {d} | {w['plain']:.3f} | {w['peer_hint']:.3f} | "
                         f"{w['reference_hint']:.3f} | {w['peer_kept_rate']:.2f} | {w['n_items']} |")
    return lines


def _primary_table(pr: dict) -> list[str]:
    lines = ["| student | comparison | domain | OPCoD | baseline | OPCoD − baseline (paired, 95% interval) | "
             "seeds | verdict |", "|---|---|---|---|---|---|---|---|"]
    for row in pr["primary"]:
        what = ("help: OPCoD − never-give" if row["comparison"] == "help" else "harm: OPCoD − always-give")
        lines.append(f"| {row['student']} | {what} | {row['domain']} ({row['domain_role']}) | {row['opcod']:.3f} | "
                     f"{row['baseline']:.3f} | {signed(row['interval'])} | {len(row['seeds'])} | {row['verdict']} |")
    return lines


def save_results(results: dict, path: Path) -> None:
    """The report's JSON beside it, compact: three pairs' runs with their probes come to about 3 MB
    indented and 1.8 MB without the whitespace. (``fidelity.save_results`` wrote it indented; that
    function stays as it was because fidelity.py is inside the run cache's code digest.)"""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, separators=(",", ":")))


def _selection_table(table: dict, what: str, chosen: str | None = None) -> list[str]:
    """The lr (or τ) selection: score per method (mean final validation accuracy over the selection
    seeds), the mean final weight distance, so a rate that does not move the models shows, and the sum
    over methods the selection rule maximises, with the row the runs used in bold."""
    methods = list(next(iter(table.values())))
    if not isinstance(next(iter(next(iter(table.values())).values())), dict):   # reports before weight distance
        return [f"| {what} | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)] + [
            f"| {k} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |" for k, row in table.items()]
    lines = [f"| {what} | " + " | ".join(f"{m}: accuracy (‖θ−θ₀‖)" for m in methods) + " | sum (the rule) |",
             "|---|" + "---|" * (len(methods) + 1)]
    for k, row in table.items():
        total = f"{sum(row[m]['score'] for m in methods):.4f}"
        lines.append(f"| {k} | " + " | ".join(f"{row[m]['score']:.3f} ({row[m]['weight_l2']:.3g})" for m in methods)
                     + (f" | **{total}** (chosen) |" if k == chosen else f" | {total} |"))
    return lines


def _domain_break_table(pr: dict) -> list[str]:
    lines = ["| method | tutor | domain | cognizant tutor: broken / eligible | incognizant tutor: broken / eligible |",
             "|---|---|---|---|---|"]
    for method, agg in pr["aggregate"].items():
        for tutor, per in sorted((agg.get("breaks_by_domain") or {}).items()):
            for dom, c in sorted(per.items()):
                cells = [(f"{v['broken']}/{v['eligible']} = {v['rate']:.2f}" if v["eligible"] else
                          f"– ({v['samples']} samples)") for v in (c["cognizant"], c["incognizant"])]
                lines.append(f"| {method} | {tutor} | {dom} | {cells[0]} | {cells[1]} |")
    return lines


def _results_table(pr: dict) -> list[str]:
    doms = pr["domains"]
    head = "| method | student | " + " | ".join(f"{d}: initial → final (change)" for d in doms) + \
           " | Pareto seeds | verdict |"
    lines = [head, "|" + "---|" * (len(doms) + 4)]
    for method, agg in pr["aggregate"].items():
        for name in pr["students"]:
            st = agg["students"][name]
            cells = [f"{_iv(st['initial'][d]).fmt()} → {_iv(st['final'][d]).fmt()} "
                     f"({signed(st['change'][d])})"
                     for d in doms]
            lines.append(f"| {method} | {name} | " + " | ".join(cells) +
                         f" | {st['pareto_seeds']}/{st['n_seeds']} | {st['verdict']} |")
    return lines


def _gate_table(pr: dict) -> list[str]:
    lines = ["| method | round | student | tutor decisions | mean Δ |", "|---|---|---|---|---|"]
    for method, agg in pr["aggregate"].items():
        for key, g in sorted(agg["gates"].items()):
            r, name = key.split("|")
            lines.append(f"| {method} | {r} | {name} | {g['tutor']}/{g['n']} | "
                         f"{sum(g['deltas']) / len(g['deltas']):.3f} |")
    return lines


def _feedback_table(pr: dict) -> list[str]:
    lines = ["| method | tutor | feedback | kept rate | categories | break rate (cognizant tutor) | "
             "break rate (incognizant tutor) |", "|---|---|---|---|---|---|---|"]

    def rate(v: dict | list[int]) -> str:
        if isinstance(v, list):   # results written before the conditional definition: [broken, samples]
            return f"{v[0]}/{v[1]} of all samples (old definition)" if v[1] else "no samples"
        if not v["samples"]:
            return "no samples"
        if not v["eligible"]:
            return f"undefined (0 of {v['samples']} right without f)"
        return f"{v['broken']}/{v['eligible']} = {v['rate']:.2f} ({v['samples']} samples)"

    for method, agg in pr["aggregate"].items():
        none = {"samples": 0, "eligible": 0, "broken": 0, "rate": None}
        empty = {"cognizant": none, "incognizant": none}
        for tutor, cats in sorted(agg["categories"].items()):
            n = sum(cats.values())
            br = agg["breaks"].get(tutor, empty)
            lines.append(f"| {method} | {tutor} | {n} | {cats.get('kept', 0) / n:.2f} | "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(cats.items()))} | "
                         f"{rate(br['cognizant'])} | {rate(br['incognizant'])} |")
        if not agg["categories"]:
            lines.append(f"| {method} | – | 0 | – | – | no samples | no samples |")
    return lines


def _divergence_table(pr: dict) -> list[str]:
    lines = ["| method | tutee | domain | teacher context | rollouts | mean per-token divergence |",
             "|---|---|---|---|---|---|"]
    for method, agg in pr["aggregate"].items():
        for key, v in sorted(agg["divergence"].items()):
            tutee, dom, ctx = key.split("|")
            lines.append(f"| {method} | {tutee} | {dom} | {ctx} | {v['n']} | {v['mean']:.4f} |")
    return lines


def _comparisons(pr: dict) -> list[str]:
    """OPCoD against every baseline on each student's weak and strong domain: the per-seed paired
    difference of final test accuracy (both runs of a seed share the evaluation samples' seeds, so the
    pairing removes most evaluation noise), mean ± 95% interval over seeds."""
    from opcod_core.bench.stats import interval

    by = {(r["method"], r["seed"]): r["summary"]["students"] for r in pr["runs"]}
    if not any(m == "opcod" for m, _ in by):
        return []
    methods = [m for m in dict.fromkeys(m for m, _ in by) if m != "opcod"]
    lines = ["| student | baseline | weak domain: OPCoD − baseline | strong domain: OPCoD − baseline |",
             "|---|---|---|---|"]
    for name in pr["students"]:
        strong = pr["strong"][name]
        weak = next(d for d in pr["domains"] if d != strong)
        for m in methods:
            seeds = [s for (mm, s) in by if mm == m and ("opcod", s) in by]
            diff = [interval([by[("opcod", s)][name]["final"][d] - by[(m, s)][name]["final"][d] for s in seeds])
                    for d in (weak, strong)]
            lines.append(f"| {name} | {m} | {weak}: {_paired(diff[0])} | {strong}: {_paired(diff[1])} |")
    return lines


def _paired(iv) -> str:
    """A paired difference with what its interval says (identical runs give exactly 0)."""
    if iv.half is None:
        return f"{iv.mean:+.3f} (1 seed)"
    word = ("identical" if abs(iv.mean) < 1e-9 and iv.half < 1e-9 else "OPCoD better" if iv.low > 1e-9 else
            "OPCoD worse" if iv.high < -1e-9 else "within noise")
    return f"{iv.mean:+.3f} ± {iv.half:.3f} ({word})"


def _pair_section(key: str, pr: dict, path: Path) -> list[str]:
    """The report's section of one domain pair (and its Pareto plot next to the report)."""
    out: list[str] = []
    cfg = pr["config"]
    png = path.with_name(f"{path.stem}-{key}.png")
    plot_pair(key, pr, png)
    out += [f"## Pair {key}", "",
            f"Schedule R × K = {cfg['schedule']['rounds']} × {cfg['schedule']['steps_per_direction']}, "
            f"{cfg['rollout']['batch_prompts']} prompts × {cfg['rollout']['n']} rollouts per step, "
            f"learning rate {cfg['optim']['lr']:g}, τ = {cfg['gating']['tau']}, test avg@{cfg['eval']['k']} on "
            f"{'every' if (cfg['eval']['max_items'] or 0) >= 100_000 else cfg['eval']['max_items']} test question(s) per domain, eval temperature {cfg['eval']['temperature']}. "
            f"Student build (warm-up, or cache load): {pr['build_s']:.0f} s"
            + (f"; runs: {pr['runs_s'] / 60:.1f} min." if "runs_s" in pr else "."), "",
            f"![Pareto plot]({png.name})", "",
            "### Is the knowledge split real? (validation split, before training)", ""]
    out += _world_table(pr) + [""]
    if pr.get("lr_selection"):
        anchored = any("KL anchor" in label for label in pr["lr_selection"])   # rate and anchor chosen together
        out += [f"### Learning rate{' and KL anchor' if anchored else ''} chosen on validation", ""] + _selection_table(
            pr["lr_selection"], "lr / KL anchor" if anchored else "lr", chosen_label(pr)) + [""]
    if pr.get("tau_selection"):
        out += ["### OPCoD's τ chosen on validation (at the chosen learning rate)", "",
                "| τ | OPCoD mean final validation accuracy | tutor decisions |", "|---|---|---|"]
        out += [f"| {tau} | {row['opcod']:.3f} | {row['tutor_decisions']}/{row['gates']} |"
                for tau, row in pr["tau_selection"].items()]
        out += [""]
    if pr.get("primary"):
        out += ["### Primary comparisons (pre-registered, paired by seed)", "",
                "help = OPCoD − never-give on the student's weak domain (does tutoring teach it?); harm = "
                "OPCoD − always-give on its strong domain (does the gate block harmful feedback?). Final "
                "test accuracy; a verdict holds when the 95% interval of the per-seed differences lies "
                "above 0. Every other table is secondary.", ""] + _primary_table(pr) + [""]
    out += ["### Test accuracy: initial → final per domain (mean ± 95% interval over seeds)", ""]
    out += _results_table(pr) + [""]
    out += ["### OPCoD against the baselines (final accuracy, paired by seed)", ""] + _comparisons(pr) + [""]
    out += ["### Gate decisions per round", ""] + _gate_table(pr) + [""]
    out += ["### Feedback: anchoring kept rate and break rate by tutor cognizance", "",
            "Break rate = P(wrong with f | right without f): broken / samples whose self-teacher was right "
            "without the feedback, counts summed over seeds.", ""] + _feedback_table(pr) + [""]
    if any(agg.get("breaks_by_domain") for agg in pr["aggregate"].values()):
        out += ["Per domain of the question:", ""] + _domain_break_table(pr) + [""]
    out += ["### Per-token divergence by teacher context", ""] + _divergence_table(pr) + [""]
    return out


def write_report(results: dict, path: Path, command: str, machine: str | None = None) -> Path:
    path = Path(path)
    out: list[str] = ["# Fidelity benchmark: OPCoD and its baselines in the science world", "",
                      "Generated by `opcod bench fidelity` (opcod_core/bench); every number below comes from "
                      "the run's results JSON next to this file.", "",
                      f"- Command: `{command}`",
                      f"- Machine: {machine or platform.platform()}, Python {platform.python_version()}",
                      f"- Wall time: {results['wall_s'] / 60:.1f} min "
                      f"(seeds {results['plan'].get('seeds_by_method') or results['plan']['seeds']}, "
                      f"methods {', '.join(results['plan']['methods'])}; {cache_note(results)})",
                      f"- Students built once with seed {results['plan']['student_seed']}"
                      + (" per seed" if results["plan"]["vary_students"] else
                         "; every run of a pair starts from the same two students, the seeds vary training and evaluation"),
                      *([f"- Runs: {compute} (the learning-rate selection's validation runs are not "
                         "counted)"]
                        if (compute := run_compute(results)) else []),
                      ""]
    protocol = path.with_name(f"{path.stem}-protocol.md")
    if protocol.exists():   # the protocol, fixed before the main run and stated before any number
        out += ["## Protocol", "", f"(from `{protocol.name}`, written before the main run)", "",
                protocol.read_text().strip(), ""]
    out += summary_section(fidelity_summary(results, path.name))
    for key, pr in results["pairs"].items():
        out += _pair_section(key, pr, path)
    notes = path.with_name(f"{path.stem}-notes.md")
    if notes.exists():  # the human reading of these numbers, kept across re-runs
        out += ["## Discussion", "", f"(from `{notes.name}`, written after reading the numbers above)", "",
                notes.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path
