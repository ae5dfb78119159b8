"""Presentation of the page read models: what the templates draw, computed from what the read models
return (``app.services.run_views``, ``app.services.exchange_views``). SVG geometry, heatmap cells and the
concept highlight are added here, under the keys the templates use; nothing here reads the database."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from app.services.exchanges import ExchangeFilters
from app.services.reads import finite
import app.web.peer_charts as peer_charts
from app.web.charts import COLORS
from app.web.tokens import concept_pieces, effect_values, heatmap
from app.web.trust_view import trust_block


def run_page(page: dict[str, Any]) -> dict[str, Any]:
    """The run page (or one of its blocks): the Δ-vs-τ chart and the Pareto small multiples of its N
    students (``app.web.peer_charts``), the flow matrix and the tutor-trust charts (``app.web.trust_view``),
    when read."""
    students, domains = page["run"]["students"], page["run"]["domains"]
    out = dict(page)
    if "gates" in page:
        out["gate_svg"] = peer_charts.delta_chart(page["gates"], students)
    if "pareto_series" in page:
        out["pareto"] = peer_charts.pareto_multiples(page["pareto_series"], domains)
    if "flows" in page:
        out["flows"] = flow_matrix(page["flows"])
    if "trust" in page:
        out["trust"] = trust_block(page["trust"])
    return out


# --- the tutoring-flow matrix (app.services.flows) -----------------------------------------------------------

def exchanges_page_url(run_id: int, **filters: Any) -> str:
    """The HTML exchanges page of a run with these filters (the query string its form reads back)."""
    return f"/runs/{run_id}/exchanges?" + urlencode(ExchangeFilters(**filters).query_items())


def signed(change: float | None) -> str:
    """An accuracy change with its sign and two decimals ("+0.25", "-0.10", "0.00"; "–" when none)."""
    if change is None:
        return "–"
    change = round(change, 2)
    return "0.00" if change == 0 else f"{change:+.2f}"


def rate_of(num: int, den: int, rate: float | None) -> str:
    """A rate with its counts ("58% (7/12)"; "–" when the denominator is zero)."""
    return "–" if rate is None or not den else f"{rate:.0%} ({num}/{den})"


def trend(change: float | None) -> str:
    if change is None:
        return "none"
    change = round(change, 2)
    return "up" if change > 0 else "down" if change < 0 else "flat"


def _flow_domain(run_id: int, split: str, tutor: str, tutee: str, d: dict[str, Any]) -> dict[str, Any]:
    where = {"tutor": tutor, "tutee": tutee, "domain": d["domain"]}
    rounds = ", ".join(str(r) for r in d["accuracy_rounds"])
    own_kept = d["kept"] - d["peer_kept"]   # what the kept link lists (the exchange list's tutor is the own one)
    shadow = d["shadow"] or d["shadow_probes"]
    return {
        "domain": d["domain"], "exchanges": d["exchanges"], "feedback": d["feedback"],
        "human_edited": d["human_edited"], "shown": bool(d["exchanges"] or d["feedback"] or shadow),
        "url": exchanges_page_url(run_id, **where) if d["exchanges"] else None,
        "kept_url": exchanges_page_url(run_id, **where, category="kept", human_edited=False) if own_kept else None,
        "feedback_url": exchanges_page_url(run_id, feedback_from=tutor, tutee=tutee, domain=d["domain"],
                                           human_edited=False) if d["feedback"] else None,
        "feedback_title": f"{tutor}'s feedback given to {tutee} on {d['domain']} (human edits apart)" + (
            f"; {d['peer_feedback']} of it ({d['peer_kept']} kept) on exchanges another tutor leads (routing mode "
            "all), listed under that tutor" if d["peer_feedback"] else ""),
        "kept_text": rate_of(d["kept"], d["feedback"], d["kept_rate"]),
        "break_text": rate_of(d["breaks"], d["opportunities"], d["break_rate"]),
        "break_title": f"{d['breaks']} of the {d['opportunities']} probes right without the feedback turned wrong "
                       f"with it ({d['probes']} probed)" if d["opportunities"] else
        f"{d['probes']} probed, none right without the feedback",
        "shadow_text": f"{d['shadow']} · {d['shadow_probes']} probed" if shadow else None,
        "shadow_title": f"feedback {tutor} wrote while quarantined: stored and probed, never used (not in fb, "
                        "kept or break)",
        "change_text": signed(d["accuracy_change"]), "change_class": trend(d["accuracy_change"]),
        "change_title": f"{tutee}'s {split} accuracy on {d['domain']} after minus before each round this tutor "
                        f"taught it (rounds {rounds}), summed" if rounds else
        f"no {split} evaluation before and after a round this tutor taught {tutee}",
    }


def _flow_cell(m: dict[str, Any], tutor: str, tutee: str, cell: dict[str, Any] | None) -> dict[str, Any]:
    """One (tutor, tutee) cell; the diagonal (a student tutoring itself) is greyed, and empty unless the
    run really has such exchanges. A tutor taught a tutee (on a domain) when exchanges name it as their tutor,
    or when it wrote feedback on the tutee's rollouts: on another tutor's exchanges (routing mode ``all``) or
    in the shadow (quarantined)."""
    domains = [_flow_domain(m["run_id"], m["split"], tutor, tutee, d) for d in (cell or {}).get("domains", [])]
    taught = any(d["shown"] for d in domains)
    css = " ".join(["flow-cell"] + (["flow-self"] if tutor == tutee else []) + ([] if taught else ["flow-empty"]))
    return {"tutee": tutee, "self": tutor == tutee, "taught": taught, "domains": domains if taught else [],
            "css": css}


def flow_matrix(m: dict[str, Any]) -> dict[str, Any]:
    """The matrix as the run page draws it: every tutor row has a cell for every student column (the
    diagonal too), each domain entry with its display strings and its links into the exchanges page."""
    rows = []
    for row in m["rows"]:
        by_tutee = {c["tutee"]: c for c in row["cells"]}
        rows.append({"tutor": row["tutor"],
                     "cells": [_flow_cell(m, row["tutor"], t, by_tutee.get(t)) for t in m["students"]]})
    return {"students": m["students"], "domains": m["domains"], "split": m["split"], "rows": rows,
            "taught": any(c["taught"] for r in rows for c in r["cells"]),
            "unattributed_probes": m["unattributed_probes"]}


def exchange_filter_choices(run: dict[str, Any], f: ExchangeFilters) -> dict[str, list[Any]]:
    """The exchanges page's select options: the run's domains, students and directions, plus the current filter's
    value when the run does not list it (a link may name one only the rows know): the form never drops it."""
    def with_current(values: list[str], current: str | None) -> list[str]:
        return list(values) + ([current] if current is not None and current not in values else [])
    directions = list(range(1, max(len(run["students"]), 2) + 1))   # one direction per student as tutee
    return {"domain": with_current(run["domains"], f.domain), "tutor": with_current(run["students"], f.tutor),
            "feedback_from": with_current(run["students"], f.feedback_from),
            "tutee": with_current(run["students"], f.tutee),
            "direction": directions + ([f.direction] if f.direction is not None and f.direction not in directions else [])}


def compare(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The compare page: a colour per run, one Pareto panel per student position and the students the runs
    share (``app.web.peer_charts``)."""
    if data is None:
        return None
    colors = [COLORS[i % len(COLORS)] for i in range(len(data["runs"]))]
    by_run = {r["id"]: c for r, c in zip(data["runs"], colors, strict=True)}
    return {**data, "colors": colors, "pareto": peer_charts.compare_panels(data["pareto_panels"], colors),
            "peers": peer_charts.peer_table(data["peers"], by_run)}


def exchange(d: dict[str, Any]) -> dict[str, Any]:
    """One exchange: the question with its concept marked, and the divergence and feedback-effect heatmaps."""
    ex, fb, prompt = d["exchange"], d["feedback"], d["prompt"]
    concept = fb["concept"] if fb else None
    tokens = d["tokens"]
    heat_eff = None
    if ex["context_used"] == "s+f":
        heat_eff = heatmap(tokens, effect_values(d["divergence"], d["divergence_s_only"]),
                           "feedback effect: divergence with s+f minus with s only", "effect")
    feedback = None if fb is None else {
        **fb, "concept_in_question": any(hit for _, hit in concept_pieces(prompt["question"], fb["concept"]))}
    return {**d, "prompt": {**prompt, "question_pieces": concept_pieces(prompt["question"], concept)},
            "feedback": feedback, "replays": [replay(r) for r in d["replays"]],
            "heat_div": heatmap(tokens, d["divergence"], f"divergence per token (context {ex['context_used']})"),
            "heat_eff": heat_eff}


def replay(r: dict[str, Any]) -> dict[str, Any]:
    """A replay: before and after on one colour scale (equal colours mean equal divergence), and the effect."""
    before, after = r["divergence_before"] or [], r["divergence_after"] or []
    shared = max([abs(finite(v) or 0.0) for v in before + after] or [0.0])
    toks = r["tokens"]
    return {**r,
            "before": heatmap(toks, r["divergence_before"], "before: stored feedback", vmax=shared),
            "after": heatmap(toks, r["divergence_after"], "after: replayed feedback", vmax=shared),
            "effect": heatmap(toks, r["effect_values"], "after minus before", "effect")}


def approvals(data: dict[str, Any]) -> dict[str, Any]:
    """The approval queue: each question with the feedback's concept marked."""
    def item(a: dict[str, Any]) -> dict[str, Any]:
        return {**a, "question_pieces": concept_pieces(a["question"], a["concept"])}
    return {**data, "pending": [item(a) for a in data["pending"]], "decided": [item(a) for a in data["decided"]]}
