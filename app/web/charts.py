"""Geometry of the server-drawn SVG charts (numbers only; labels are escaped by the templates): the
Pareto panels and the gate chart (Δ per student and round against τ)."""

from __future__ import annotations

import math
from typing import Any

from opcod_core.vocabulary import pareto_improved

PARETO_W, PARETO_H, PAD = 260, 260, 36
GATE_W, GATE_H = 420, 220
COLORS = ("#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c7cfa")


def _scale(v: float, lo: float, hi: float, px_lo: float, px_hi: float) -> float:
    if hi <= lo:
        return px_lo
    return round(px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo), 1)


def pareto_geometry(series: list[dict[str, Any]], domains: list[str],
                    label: str | None = None) -> list[dict[str, Any]]:
    """One panel per student: axes 0..1 (domain A accuracy on x, B on y), the initial point, the
    trajectory over evaluations and the shaded region that counts as Pareto improvement (both scores at
    least the initial ones)."""
    panels = []
    for i, st in enumerate(series):
        panels.append(pareto_panel([st], domains, st["student"], [COLORS[i % len(COLORS)]]))
    return panels


def pareto_panel(series: list[dict[str, Any]], domains: list[str], title: str,
                  colors: list[str]) -> dict[str, Any]:
    w, h, pad = PARETO_W, PARETO_H, PAD
    x0, x1, y0, y1 = pad, w - 10, h - pad, 10

    def X(v):
        return _scale(v, 0.0, 1.0, x0, x1)

    def Y(v):
        return _scale(v, 0.0, 1.0, y0, y1)

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
        improved = pareto_improved({"a": init["a"], "b": init["b"]}, {"a": last["a"], "b": last["b"]})
        lines.append({"label": st.get("label") or st["student"], "color": color, "points": p,
                      "path": " ".join(f"{q['x']},{q['y']}" for q in p), "initial": p[0], "last": p[-1],
                      "improved": improved, "init_acc": init, "last_acc": last})
    ticks = [{"v": t, "x": X(t), "y": Y(t)} for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"title": title, "w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "lines": lines,
            "region": region, "ticks": ticks,
            "xlabel": domains[0] if domains else "domain A", "ylabel": domains[1] if len(domains) > 1 else "domain B"}


def gate_geometry(gates: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Delta per student per round as points (filled: tutor, hollow: silent) against the tau line."""
    auto = [g for g in gates if g["student"]]
    if not auto:
        return None
    # the newest record per (round, student) is the one in force
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for g in auto:
        latest[(g["round"], g["student"])] = g
    rounds = sorted({r for r, _ in latest})
    names = [s["name"] for s in students] or sorted({n for _, n in latest})
    vmax = max([g["delta"] + (g.get("delta_se") or 0.0) for g in latest.values()]
               + [g["tau"] for g in latest.values()] + [0.05])
    vmax = _nice_ceiling(vmax * 1.1)
    w, h, pad = GATE_W, GATE_H, 40
    x0, x1, y0, y1 = pad, w - 12, h - 30, 12
    slot = (x1 - x0) / max(len(rounds), 1)
    pts = []
    taus = []
    for ri, r in enumerate(rounds):
        cx = x0 + slot * (ri + 0.5)
        tau_here = None
        for si, name in enumerate(names):
            g = latest.get((r, name))
            if g is None:
                continue
            tau_here = g["tau"]
            off = (si - (len(names) - 1) / 2) * min(18, slot / 4)
            se = g.get("delta_se")
            se_bar = None if se is None else {"y_lo": _scale(max(g["delta"] - se, 0.0), 0, vmax, y0, y1),
                                              "y_hi": _scale(g["delta"] + se, 0, vmax, y0, y1)}
            pts.append({"x": round(cx + off, 1), "y": _scale(g["delta"], 0, vmax, y0, y1), "round": r,
                        "student": name, "delta": g["delta"], "delta_se": se, "se_bar": se_bar, "tau": g["tau"],
                        "decision": g["decision"], "color": COLORS[si % len(COLORS)], "source": g["source"]})
        if tau_here is not None:
            taus.append({"x0": round(x0 + slot * ri + 4, 1), "x1": round(x0 + slot * (ri + 1) - 4, 1),
                         "y": _scale(tau_here, 0, vmax, y0, y1), "tau": tau_here, "round": r})
    yt = [{"v": round(vmax * t / 4, 4), "y": _scale(vmax * t / 4, 0, vmax, y0, y1)} for t in range(5)]
    xt = [{"round": r, "x": round(x0 + slot * (i + 0.5), 1)} for i, r in enumerate(rounds)]
    return {"w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "points": pts, "taus": taus,
            "yticks": yt, "xticks": xt,
            "legend": [{"name": n, "color": COLORS[i % len(COLORS)]} for i, n in enumerate(names)]}


def _nice_ceiling(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e
