"""``opcod bench drift``: what a long run does to a student, step by step, read from ``events.jsonl``.

Why: a run whose test accuracy collapses can do so for several reasons that look alike in the final
numbers: rollouts that stop stopping (cut at the length limit), answers that no longer parse, weights
that walk far from where they started, or plain forgetting of one domain. Each has its own signature
in the per-step metrics the trainer writes (``rollout/finish_*``, ``rollout/parse_failure``,
``rollout/mean_length``, ``train/weight_l2``) and in the per-round evaluation per (student, domain)
cell, so this report puts them side by side for several runs (e.g. the same schedule with and without
the end-of-sequence token scored) without re-running anything.

Input: one or more ``LABEL=DIR`` pairs, each DIR written by ``opcod train --out DIR``. Output: a
Markdown section per run (evaluation per round and cell, then per-step metrics per direction, averaged
over blocks of steps so that a 2 x 40 run stays readable), the reading from ``<report>-notes.md`` when
that file exists, and a JSON file with every number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

STEP_KEYS = ("rollout/accuracy", "rollout/finish_eos", "rollout/finish_length", "rollout/parse_failure",
             "rollout/mean_length", "train/weight_l2", "train/grad_norm")
SHORT = {"rollout/accuracy": "acc", "rollout/finish_eos": "eos", "rollout/finish_length": "cut",
         "rollout/parse_failure": "unparsed", "rollout/mean_length": "len", "train/weight_l2": "‖θ−θ₀‖",
         "train/grad_norm": "grad"}


@dataclass
class RunTrace:
    label: str
    config: dict
    evals: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)   # round -> student -> domain
    steps: list[dict] = field(default_factory=list)                             # step events, in order
    rollouts: list[dict] = field(default_factory=list)    # per exchange: round, direction, step, tutee,
                                                          # domain, correct, finish_reason (automatic ones)


def read_trace(label: str, run_dir: str | Path) -> RunTrace:
    """The config, evaluations and step events of one headless run directory."""
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{label}: no events.jsonl in {run_dir}")
    trace = RunTrace(label, {})
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if e.get("type") == "run_start":
            trace.config = e.get("config") or {}
        elif e.get("type") == "eval":
            trace.evals.setdefault(int(e["round"]), {}).setdefault(e["student"], {})[e["domain"]] = e["accuracy"]
        elif e.get("type") == "step":
            trace.steps.append(e)
        elif e.get("type") == "exchange" and e.get("feedback_source") != "human":
            div = e.get("divergence") or None   # per-token divergence to the self-teacher (absent: not trained on)
            trace.rollouts.append({**{k: e.get(k) for k in ("round", "direction", "step", "tutee", "domain", "correct",
                                                            "finish_reason")},
                                   "div": sum(div) / len(div) if div else None})
    return trace


def domain_rows(trace: RunTrace, block: int) -> list[dict]:
    """Per (round, direction, question domain): rollout accuracy, the share cut at the length limit and
    the mean per-token divergence to the self-teacher, over the whole direction and over its last
    ``block`` steps (a drift confined to one domain, e.g. a student's weak one, is diluted in the
    per-step means; a divergence pinned at the JSD's bound on a domain the rollouts never get right is
    the saturation of ``opcod_core.losses``)."""
    groups: dict[tuple, list[dict]] = {}
    for r in trace.rollouts:
        groups.setdefault((r["round"], r["direction"], r["tutee"], r["domain"]), []).append(r)
    rows = []
    for (rnd, d, tutee, dom), rs in sorted(groups.items()):
        last_step = max(r["step"] for r in rs)
        tail = [r for r in rs if r["step"] > last_step - block]
        rows.append({"round": rnd, "direction": d, "tutee": tutee, "domain": dom, "n": len(rs), "n_tail": len(tail),
                     **{f"{k}{suffix}": sum(bool(test(r)) for r in part) / len(part)
                        for suffix, part in (("", rs), ("_tail", tail))
                        for k, test in (("acc", lambda r: r["correct"]),
                                        ("cut", lambda r: r["finish_reason"] == "length"))},
                     **{f"div{suffix}": _mean([r["div"] for r in part if r["div"] is not None])
                        for suffix, part in (("", rs), ("_tail", tail))}})
    return rows


def block_means(steps: list[dict], block: int) -> list[dict]:
    """Per (round, direction): consecutive blocks of ``block`` steps, each metric averaged over the
    steps of the block that report it (a metric a step lacks is not counted as zero)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for s in steps:
        groups.setdefault((s["round"], s["direction"]), []).append(s)
    rows = []
    for (r, d), group in sorted(groups.items()):
        for start in range(0, len(group), block):
            part = group[start:start + block]
            row = {"round": r, "direction": d, "tutee": part[0]["tutee"],
                   "steps": f"{part[0]['step']}-{part[-1]['step']}", "loss": _mean([p["loss"] for p in part])}
            for key in STEP_KEYS:
                row[key] = _mean([p["metrics"][key] for p in part if key in p["metrics"]])
            rows.append(row)
    return rows


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def render_run(trace: RunTrace, block: int) -> list[str]:
    cfg = trace.config
    lines = [f"## {trace.label}", ""]
    sched, optim, loss = cfg.get("schedule", {}), cfg.get("optim", {}), cfg.get("loss", {})
    kind = loss.get("divergence", "jsd")
    divergence = f"{kind} (beta {loss.get('beta', 0.5)})" if kind == "jsd" else kind
    lines.append(f"Preset `{cfg.get('preset')}`, gating `{cfg.get('gating', {}).get('mode')}`, "
                 f"R x K = {sched.get('rounds')} x {sched.get('steps_per_direction')}, lr {optim.get('lr')}, "
                 f"divergence {divergence}, "
                 f"KL anchor {loss.get('kl_anchor', 0.0)}, "
                 f"score_eos {cfg.get('rollout', {}).get('score_eos', 'n/a (before the option)')}, seed {cfg.get('seed')}.")
    lines += ["", "Test accuracy per round (avg@k):", "", "| round | " + " | ".join(_cells(trace)) + " |",
              "|---|" + "---|" * len(_cells(trace))]
    for r in sorted(trace.evals):
        vals = [trace.evals[r].get(s, {}).get(d) for s, d in _cell_keys(trace)]
        lines.append(f"| {r} | " + " | ".join(_fmt(v) for v in vals) + " |")
    lines += ["", f"Per-step metrics, mean over blocks of {block} steps (eos / cut: shares of rollouts that "
              "ended with EOS / at the length limit; unparsed: share with no extractable answer; len: mean "
              "rollout tokens; ‖θ−θ₀‖: L2 distance of the tutee's weights from the run's start):", "",
              "| round | dir | tutee | steps | loss | " + " | ".join(SHORT[k] for k in STEP_KEYS) + " |",
              "|---|---|---|---|---|" + "---|" * len(STEP_KEYS)]
    for row in block_means(trace.steps, block):
        lines.append(f"| {row['round']} | {row['direction']} | {row['tutee']} | {row['steps']} | "
                     f"{_fmt(row['loss'], 4)} | " + " | ".join(
                         _fmt(row[k], 1 if k == "rollout/mean_length" else 3) for k in STEP_KEYS) + " |")
    rows = domain_rows(trace, block)
    if rows:
        lines += ["", f"Rollouts per question domain (whole direction, and its last {block} steps; div: mean "
                  "per-token divergence to the self-teacher):", "",
                  "| round | dir | tutee | domain | rollouts | acc | cut | div | last steps: rollouts | acc | cut | div |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['round']} | {r['direction']} | {r['tutee']} | {r['domain']} | {r['n']} | {r['acc']:.3f} | "
                  f"{r['cut']:.3f} | {_fmt(r['div'], 4)} | {r['n_tail']} | {r['acc_tail']:.3f} | {r['cut_tail']:.3f} | "
                  f"{_fmt(r['div_tail'], 4)} |" for r in rows]
    return lines + [""]


def _cell_keys(trace: RunTrace) -> list[tuple[str, str]]:
    first = trace.evals.get(0) or next(iter(trace.evals.values()), {})
    return [(s, d) for s in sorted(first) for d in sorted(first[s])]


def _cells(trace: RunTrace) -> list[str]:
    return [f"{s} on {d}" for s, d in _cell_keys(trace)]


def render_world(split: dict) -> list[str]:
    """The knowledge-split section: ``split`` as ``cmd_drift`` measures it (``opcod_core.bench.world``) for
    the students every run starts from: plain accuracy next to the self-teacher's with s, with the
    reference hint, with s and the hint, and with the peer's kept feedback (what the teacher of a run sees)."""
    from opcod_core.bench.report import _world_table

    return ["## Knowledge split before training", "",
            f"The students the runs start from, on the whole {split['split']} split at avg@{split['k']} "
            "(`opcod_core.bench.world.measure_world`):", "", *_world_table(split), ""]


def write_drift_report(runs: list[tuple[str, str]], out: str | Path, block: int = 10,
                       preamble: str = "", world: dict | None = None) -> Path:
    """Writes the Markdown report (and ``.json`` beside it) for ``runs`` = [(label, dir), ...], with the
    knowledge-split section first when ``world`` (``render_world``) is given."""
    traces = [read_trace(label, d) for label, d in runs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [preamble.rstrip(), ""] if preamble else []
    if world is not None:
        lines += render_world(world)
    for t in traces:
        lines += render_run(t, block)
    notes = out.with_name(f"{out.stem}-notes.md")
    if notes.exists():   # the human reading of the tables, kept across re-generations
        lines += ["## Reading", "", f"(from `{notes.name}`, written after reading the tables above)", "",
                  notes.read_text().strip(), ""]
    out.write_text("\n".join(lines))
    runs_json = [{"label": t.label, "config": t.config, "evals": t.evals,
                  "steps": [{k: s[k] for k in ("round", "direction", "step", "tutee", "loss", "metrics")}
                            for s in t.steps]} for t in traces]
    # a list of runs as before; an object with the knowledge split next to them when it was measured
    # compact: every step of every run is in it, and indentation alone doubled a report of eight runs
    out.with_suffix(".json").write_text(json.dumps(runs_json if world is None else {"world": world, "runs": runs_json},
                                                   separators=(",", ":")))
    return out
