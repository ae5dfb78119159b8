"""Geometry of the server-drawn SVG charts (numbers only; labels are escaped by the templates): a Pareto
panel (one or more trajectories in accuracy space) and the scales the charts share. The run page's small
multiples and its Δ-vs-τ chart of N students are built on these in ``app.web.peer_charts``."""

from __future__ import annotations

import math
from typing import Any

from opcod_core.vocabulary import pareto_improved

PARETO_W, PAD = 260, 36
COLORS = ("#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c7cfa")


def scale(v: float, lo: float, hi: float, px_lo: float, px_hi: float) -> float:
    """``v`` in ``lo..hi`` mapped linearly onto ``px_lo..px_hi`` (rounded to a tenth of a pixel)."""
    if hi <= lo:
        return px_lo
    return round(px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo), 1)


def pareto_panel(series: list[dict[str, Any]], domains: list[str], title: str, colors: list[str], *,
                 size: int = PARETO_W, axes: tuple[str, str] | None = None) -> dict[str, Any]:
    """One panel: axes 0..1 (accuracy ``a`` on x, ``b`` on y; ``axes`` names them, else the two
    domains), each series' trajectory over evaluations from its initial point, and the shaded region of
    both at least the first series' initial ones. A point's ``scores`` (accuracy per domain), when given,
    decide the Pareto verdict over every domain."""
    w, h, pad = size, size, PAD
    x0, x1, y0, y1 = pad, w - 10, h - pad, 10

    def X(v):
        return scale(v, 0.0, 1.0, x0, x1)

    def Y(v):
        return scale(v, 0.0, 1.0, y0, y1)

    lines = []
    region = None
    for st, color in zip(series, colors, strict=True):
        pts = st["points"]
        if not pts:
            lines.append({"label": st.get("label") or st["student"], "color": color, "points": [],
                          "path": "", "initial": None, "last": None})
            continue
        init = pts[0]
        if region is None:
            region = {"x": X(init["a"]), "y": y1, "w": round(X(1.0) - X(init["a"]), 1),
                      "h": round(Y(init["b"]) - y1, 1)}
        p = [{"x": X(q["a"]), "y": Y(q["b"]), "round": q["round"], "a": q["a"], "b": q["b"]} for q in pts]
        last = pts[-1]
        improved = pareto_improved(init.get("scores") or {"a": init["a"], "b": init["b"]},
                                   last.get("scores") or {"a": last["a"], "b": last["b"]})
        lines.append({"label": st.get("label") or st["student"], "color": color, "points": p,
                      "path": " ".join(f"{q['x']},{q['y']}" for q in p), "initial": p[0], "last": p[-1],
                      "improved": improved, "init_acc": init, "last_acc": last})
    ticks = [{"v": t, "x": X(t), "y": Y(t)} for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"title": title, "w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "lines": lines,
            "region": region, "ticks": ticks,
            "xlabel": axes[0] if axes else domains[0] if domains else "domain A",
            "ylabel": axes[1] if axes else domains[1] if len(domains) > 1 else "domain B"}


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is at least ``v`` (an axis' top)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e
