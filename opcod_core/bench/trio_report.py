"""Writes the trio benchmark's report (``opcod bench fidelity --mode trio``): a Markdown file with every table, the
results JSON beside it and one PNG.

The plot has one panel per student: x = the three domains, y = final test accuracy (mean and 95% interval over
seeds) in the trio, in each pair that scored the student on that domain, and in the poisoned trio with
auto-quarantine on and off, with the initial accuracy as a grey square. Every number comes from the results
dict and its analysis (``opcod_core.bench.trio_analysis``); nothing is typed in by hand. The summary paragraph
near the top is ``opcod_core.bench.summary``'s, the same that ``opcod bench readme`` puts in the README.
"""

from __future__ import annotations

import platform
from pathlib import Path

from opcod_core.bench.aggregate import aggregate
from opcod_core.bench.report import _feedback_table, _gate_table
from opcod_core.bench.stats import Interval, signed
from opcod_core.bench.summary import cache_note, summary_section, trio_summary
from opcod_core.bench.trio import POISON_OFF, POISON_ON, TRIO

SERIES = ((TRIO, "trio", "tab:red"), (POISON_ON, "poisoned, quarantine on", "tab:green"),
          (POISON_OFF, "poisoned, quarantine off", "tab:purple"))
PAIR_COLORS = ("tab:blue", "tab:orange", "tab:brown")    # by the partner's place among the students


def _fmt(d: dict | None) -> str:
    return "–" if d is None else Interval(d["mean"], d["half"], d["n"]).fmt()


def _diff(p: dict) -> str:
    words = {"up": "above 0", "down": "below 0: beyond noise", "noise": "within noise"}
    return f"{signed(p['interval'])} ({words.get(p['word'], p['word'])})"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, doms, rows = results["students"], results["domains"], results["analysis"]["trio_vs_pairs"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.4), sharey=True)
    finals = {label: {} for label, _, _ in SERIES}
    for r in results["analysis"].get("others", []):
        for label, key in ((TRIO, "clean"), (POISON_ON, "on"), (POISON_OFF, "off")):
            finals[label][(r["student"], r["domain"])] = r[key]
    for r in rows:
        finals[TRIO].setdefault((r["student"], r["domain"]), r["trio"])
    for ax, name in zip(axes, names, strict=True):
        for i, d in enumerate(doms):
            init = next((r["trio_initial"] for r in rows if r["student"] == name and r["domain"] == d), None)
            if init:
                ax.plot([i - 0.3], [init["mean"]], "s", color="grey", label="initial" if i == 0 else None)
            mine = [r for r in rows if r["student"] == name and r["domain"] == d]
            for j, r in enumerate(mine):
                color = PAIR_COLORS[names.index(r["partner"]) % len(PAIR_COLORS)]
                _point(ax, i - 0.15 + 0.05 * j, r["pair_final"], color, f"pair with {r['partner']}", "o")
            for k, (label, text, color) in enumerate(SERIES):
                _point(ax, i + 0.05 + 0.1 * k, finals[label].get((name, d)), color, text, "D")
        ax.set_xticks(range(len(doms)), doms)
        ax.set_title(f"student {name} (strong: {results['strong'][name]})")
        ax.set_ylabel("final test accuracy")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), fontsize=7)
    fig.suptitle("Trio vs pairs (mean and 95% interval over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _point(ax, x: float, iv: dict | None, color: str, label: str, marker: str) -> None:
    if iv is None:
        return
    ax.errorbar([x], [iv["mean"]], yerr=[[iv["half"] or 0]], fmt=marker, color=color, label=label, capsize=3, ms=6)


def _setup(results: dict) -> list[str]:
    cfg, p = results["config"], results["plan"]
    sc, ro = cfg["schedule"], cfg["rollout"]
    r, k = sc["rounds"], sc["steps_per_direction"]
    pair_gate = next(iter(results["pair_configs"].values()))["gating"]
    return ["## Setup", "",
            f"- Schedule R × K = {r} × {k}, {ro['batch_prompts']} prompts × {ro['n']} rollouts per step, learning rate "
            f"{cfg['optim']['lr']:g}, test avg@{cfg['eval']['k']} on "
            f"{'every' if (cfg['eval']['max_items'] or 0) >= 100_000 else cfg['eval']['max_items']} test question(s) "
            "per domain.",
            f"- Budget: every student is tutee for R · K = {r * k} steps in the trio and in each pair (one direction "
            f"of K steps per student per round); the trio run has 3 · R · K = {3 * r * k} steps, a pair "
            f"2 · R · K = {2 * r * k}.",
            f"- Trio: gating `{cfg['gating']['mode']}` (τ = {cfg['gating']['tau']}), routing "
            f"`{cfg.get('routing', {}).get('mode', 'best')}`. Pairs: the fidelity benchmark's `opcod` "
            f"(gating `cognizance`, τ = {pair_gate['tau']}).",
            f"- Students built once (build seed {p['student_seed']}; student build or cache load "
            f"{results['build_s']:.0f} s); every run starts from them; seeds vary training and evaluation.", ""]


def _pairs_table(results: dict) -> list[str]:
    lines = ["| student | domain (role) | pair (partner) | initial: trio run / pair run | final: trio | final: pair | "
             "trio − pair (paired, 95% interval) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in results["analysis"]["trio_vs_pairs"]:
        lines.append(f"| {r['student']} | {r['domain']} ({r['role']}) | {r['pair']} ({r['partner']}) | "
                     f"{_fmt(r['trio_initial'])} / {_fmt(r['pair_initial'])} | {_fmt(r['trio'])} | "
                     f"{_fmt(r['pair_final'])} | {signed(r['difference']['interval'])} | {r['verdict']} |")
    return lines


def _poison_section(results: dict) -> list[str]:
    p, a = results["poison"], results["analysis"]
    c = a["claims"]
    out = ["## Poisoned peer", "",
           f"Tutor **{p['tutor']}**'s feedback is replaced by its corrupted hint from global step {p['from_step']} of "
           f"{p['total_steps']} (`faults.poison`, a benchmark fault); the trio runs again with `trust.auto_quarantine` "
           f"on and off, threshold {p['threshold']:g}"
           + (f", with the recent window `trust.recent` = {p['recent']} when on" if p.get("recent") else "") + ".", "",
           "| pre-registered claim | verdict |", "|---|---|",
           f"| quarantine on: {p['tutor']} is quarantined within {p['within']} steps of the poison, at every seed | "
           f"{c['quarantined_within']['verdict']} |",
           f"| quarantine on: no other student's final accuracy on any domain falls beyond noise (on − clean) | "
           f"{c['others_within_noise']['verdict']} |", "",
           "### Quarantine of the poisoned tutor", "",
           "| variant | seed | quarantined from step | steps after the poison | within the bound | quarantined before "
           "the poison | lifts after | other tutors quarantined | its probes until then: broken / eligible (samples) | "
           "poisoned feedback: written / kept / used | used after the quarantine |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for q in a["quarantine"]:
        pr, po = q["probes"], q["poisoned"]
        out.append(f"| {q['variant']} | {q['seed']} | {q['quarantine_step'] if q['quarantine_step'] is not None else '–'} | "
                   f"{q['steps_to_quarantine'] if q['steps_to_quarantine'] is not None else '–'} | "
                   f"{'yes' if q['within'] else 'no'} | {', '.join(map(str, q['before_poison'])) or '–'} | "
                   f"{', '.join(map(str, q['lifts_after'])) or '–'} | {', '.join(q['other_quarantines']) or '–'} | "
                   f"{pr['broken']} / {pr['eligible']} ({pr['samples']}) | {po['written']} / {po['kept']} / {po['used']} | "
                   f"{'yes' if q['used_after_quarantine'] else 'no'} |")
    out += ["", "### Final test accuracy with the poisoned peer (paired by seed)", "",
            "| student | domain | clean trio | poisoned, on | poisoned, off | on − clean | off − clean (the damage) | "
            "on − off |", "|---|---|---|---|---|---|---|---|"]
    for r in a["others"]:
        who = f"{r['student']} (poisoned tutor)" if r["poisoned_tutor"] else r["student"]
        out.append(f"| {who} | {r['domain']} | {_fmt(r['clean'])} | {_fmt(r['on'])} | {_fmt(r['off'])} | "
                   f"{_diff(r['on_minus_clean'])} | {_diff(r['off_minus_clean'])} | {_diff(r['on_minus_off'])} |")
    return out + [""] + _replay_section(results)


def _replay_section(results: dict) -> list[str]:
    r = results["analysis"].get("replay")
    if not r:
        return []
    p = results["poison"]
    out = [f"### Recent-window rule, replayed (trust.recent = {r['recent']}; the protocol's amendment)", "",
           f"Each run without a quarantine is replayed through `TrustState` with `recent` = {r['recent']}, threshold "
           f"{r['threshold']:g}, z {r['z']:g}: up to its first quarantine it is exactly the run that rule would have "
           "made (`trio_analysis.replay`). A first quarantine of another tutor, before the poison, or in a clean "
           "run is a false alarm.", "",
           f"| claim 1 under the window rule: {p['tutor']} quarantined within {p['within']} steps of the poison, at every "
           f"seed (poison-off runs) | false alarms |", "|---|---|",
           f"| {r['verdict']} | {', '.join(r['false_alarms']) or 'none'} |", "",
           "| variant | seed | replay gives the run's counts | first quarantine (tutor @ step, domain) | its last "
           f"{r['recent']}: breaks / opportunities | steps after the poison | within the bound | false alarm |",
           "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        f = row["first"]
        first = f"{f['tutor']} @ {f['step']}, {f['domain']}" if f else row.get("why", "–")
        window = f"{f['recent']['breaks']} / {f['recent']['opportunities']}" if f else "–"
        after = row["steps_after_poison"] if row["steps_after_poison"] is not None else "–"
        within = "–" if row["variant"] == TRIO or "why" in row else ("yes" if row["within"] else "no")
        out.append(f"| {row['variant']} | {row['seed']} | {'yes' if row['reproduces'] else 'no'} | {first} | {window} | "
                   f"{after} | {within} | {'yes' if row['false_alarm'] else 'no'} |")
    return out + [""] + _real_lines(r)


def _real_lines(replay: dict) -> list[str]:
    """The replay checked against the runs that really used the window (``trio_analysis.real_against_replay``)."""
    real = replay.get("real") or []
    if not real:
        return []
    cells = "; ".join(f"seed {x['seed']}: real {x['real'] or 'none'}, replayed {x['replayed'] or 'none'}" for x in real)
    same = all(x["equal"] for x in real)
    return [f"The runs with auto-quarantine on used this window (`--trust-recent {replay['recent']}`), so the replay of "
            f"each run without quarantine is checked against its real twin: {cells}. "
            + ("The replay predicted every real first quarantine." if same else
               "**The replay and the real run differ** at seed(s) "
               + ", ".join(str(x["seed"]) for x in real if not x["equal"]) + "."), ""]


def write_trio_report(results: dict, path: Path, command: str, machine: str | None = None) -> Path:
    path = Path(path)
    p = results["plan"]
    png = path.with_suffix(".png")
    plot(results, png)
    out = ["# N peers: three v3 specialists co-distilled together against the three pairwise runs", "",
           "Generated by `opcod bench fidelity --mode trio` (opcod_core/bench/trio*.py); every number below comes "
           "from the results JSON next to this file. Protocol: docs/results/n-peers.md (written before any number).",
           ""]
    if p.get("quick"):
        out += ["**Quick mode: a pipeline check on tiny, barely warmed-up students. Not evidence of anything.**", ""]
    out += [f"- Command: `{command}`", f"- Machine: {machine or platform.platform()}, Python {platform.python_version()}",
            f"- Wall time: {results['wall_s'] / 60:.1f} min (seeds {p['seeds']}; {cache_note(results)})",
            ""]
    out += summary_section(trio_summary(results, path.name))
    out += _setup(results)
    out += ["## Trio vs pairs: final test accuracy per student and domain", "", f"![trio vs pairs]({png.name})", ""]
    out += _pairs_table(results) + [""]
    trio_runs = [r for r in results["runs"] if r["method"] in (TRIO, POISON_ON, POISON_OFF)]
    agg = {"aggregate": aggregate(trio_runs, results["students"], results["domains"])}
    out += ["## Tutoring in the trio runs", "", "Break rate = P(wrong with f | right without f), counts summed over "
            "seeds; cognizance from the round's gate.", ""] + _feedback_table(agg) + [""]
    out += ["### Gate decisions per round", ""] + _gate_table(agg) + [""]
    if results.get("poison"):
        out += _poison_section(results)
    notes = path.with_name(f"{path.stem}-notes.md")
    if notes.exists():
        out += ["## Discussion", "", f"(from `{notes.name}`, written after reading the numbers above)", "",
                notes.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path
