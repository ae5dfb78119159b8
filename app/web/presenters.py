"""Presentation of the page read models: what the templates draw, computed from what the read models
return (``app.services.run_views``, ``app.services.exchange_views``). SVG geometry, heatmap cells and the
concept highlight are added here, under the keys the templates use; nothing here reads the database."""

from __future__ import annotations

from typing import Any

from app.services.reads import finite
from app.web.charts import COLORS, gate_geometry, pareto_geometry, pareto_panel
from app.web.tokens import concept_pieces, effect_values, heatmap


def run_page(page: dict[str, Any]) -> dict[str, Any]:
    """The run page (or one of its blocks): the gate chart and one Pareto panel per student, when read."""
    students, domains = page["run"]["students"], page["run"]["domains"]
    out = dict(page)
    if "gates" in page:
        out["gate_svg"] = gate_geometry(page["gates"], students)
    if "pareto_series" in page:
        out["pareto"] = pareto_geometry(page["pareto_series"], domains)
    return out


def compare(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The compare page: a colour per run and one Pareto panel per student position."""
    if data is None:
        return None
    colors = [COLORS[i % len(COLORS)] for i in range(len(data["runs"]))]
    panels = [pareto_panel(p["series"], p["domains"], p["title"], colors) for p in data["pareto_panels"]]
    return {**data, "colors": colors, "pareto": panels}


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
