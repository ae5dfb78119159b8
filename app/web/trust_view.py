"""The run page's tutor-trust block: the trust read model (``app.services.trust``) as one small chart per tutor
and the text around it. Numbers and geometry only; names and reasons are escaped by the template.

Each tutor's chart: x = global step (0 to the run's newest step + 1), y = break rate 0..1. The cumulative
Wilson interval of every domain together is a band and its rate a line, each domain's lower bound a thin line
(the automatic quarantine compares a domain's lower bound with the threshold), the threshold a dashed line,
and the quarantine periods shaded from the step they hold from to the step they were lifted at (or to the
right edge while open). A cumulative value holds from the step it was measured until the next measurement,
so the series are drawn as steps, not slopes.

Shown when the run has more than two students or any trust data (a trust change, a probe of shadow
feedback): a two-peer run without quarantine keeps the page it had.
"""

from __future__ import annotations

from typing import Any

from app.web.charts import COLORS, scale

W, H = 420, 170
X0, X1, Y0, Y1 = 36, W - 10, H - 26, 10


def _x(g: float, end: float) -> float:
    return scale(g, 0.0, end, X0, X1)


def _y(v: float) -> float:
    return scale(v, 0.0, 1.0, Y0, Y1)


def _steps(points: list[tuple[int, float]], end: float) -> str:
    """An SVG path through (step, value) pairs drawn as steps: each value holds until the next step."""
    if not points:
        return ""
    out = []
    for i, (g, v) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else end
        x, y, x_next = _x(g, end), _y(v), _x(nxt, end)
        out.append(f"{'M' if i == 0 else 'L'}{x},{y} H{x_next}")
    return " ".join(out)


def _band(points: list[dict[str, Any]], end: float) -> str:
    """The closed step-shaped area between the upper and the lower bound."""
    if not points:
        return ""
    upper = _steps([(p["global_step"], p["upper"]) for p in points], end)
    lower = []
    for i in range(len(points) - 1, -1, -1):
        p = points[i]
        nxt = points[i + 1]["global_step"] if i + 1 < len(points) else end
        lower.append(f"L{_x(nxt, end)},{_y(p['lower'])} H{_x(p['global_step'], end)}")
    return f"{upper} {' '.join(lower)} Z"


def _period(p: dict[str, Any], end: float) -> dict[str, Any]:
    to = p["to_step"] if p["to_step"] is not None else end
    x, x_to = _x(p["from_step"], end), _x(to, end)
    if p["to_step"] is None:
        span = f"from step {p['from_step']} (in force)"
    elif p["to_step"] == p["from_step"] + 1:
        span = f"step {p['from_step']}"
    elif p["to_step"] > p["from_step"]:
        span = f"steps {p['from_step']}–{p['to_step'] - 1}"
    else:
        span = f"at step {p['from_step']} (lifted before it held)"
    return {**p, "x": x, "w": round(max(x_to - x, 1.0), 1), "span": span, "open": p["to_step"] is None}


def _rate_text(t: dict[str, Any]) -> str:
    if not t["opportunities"]:
        return f"no opportunity yet ({t['probes']} probes)"
    breaks = "1 break" if t["breaks"] == 1 else f"{t['breaks']} breaks"
    opportunities = "1 opportunity" if t["opportunities"] == 1 else f"{t['opportunities']} opportunities"
    return f"{breaks} in {opportunities} ({t['rate']:.0%}), Wilson [{t['lower']:.2f}, {t['upper']:.2f}]"


def _panel(t: dict[str, Any], end: float, domains: list[str], threshold: float) -> dict[str, Any]:
    color = {d: COLORS[i % len(COLORS)] for i, d in enumerate(domains)}
    pts = t["points"]
    return {
        "tutor": t["tutor"], "quarantined": t["quarantined"], "rate_text": _rate_text(t),
        "over_threshold": t["over_threshold"], "shadow_probes": t["shadow_probes"], "probes": t["probes"],
        "recent_over": [f"{r['domain']} ({r['breaks']} of its last {r['opportunities']}, lower bound {r['lower']:.2f})"
                        for r in t.get("recent", []) if r["over"]],
        "band": _band(pts, end),
        "rate_line": _steps([(p["global_step"], p["rate"]) for p in pts if p["rate"] is not None], end),
        "domain_lines": [{"domain": d["domain"], "color": color.get(d["domain"], "#495057"),
                          "path": _steps([(p["global_step"], p["lower"]) for p in d["points"]], end),
                          "last": d["points"][-1] if d["points"] else None}
                         for d in t["domains"]],
        "periods": [_period(p, end) for p in t["periods"]],
        "changes": t["changes"],
    }


def trust_block(m: dict[str, Any]) -> dict[str, Any]:
    """The block's data: whether to show it, the shared axes and one panel per tutor."""
    tutors = m["tutors"]
    seen = [p["global_step"] + 1 for t in tutors for p in t["points"]]
    seen += [s for t in tutors for p in t["periods"] for s in (p["from_step"], p["to_step"]) if s is not None]
    end = float(max([(m["last_step"] + 1) if m["last_step"] is not None else 0, *seen, 1]))
    has_data = any(t["changes"] or t["shadow_probes"] for t in tutors)
    ticks = sorted({0, int(end) // 2, int(end)})
    return {
        "show": m["students"] > 2 or has_data, "threshold": m["threshold"], "z": m["z"],
        "auto_quarantine": m["auto_quarantine"], "recent": m.get("recent"), "w": W, "h": H, "x0": X0, "x1": X1, "y0": Y0, "y1": Y1,
        "y_threshold": _y(m["threshold"]), "end": int(end),
        "xticks": [{"v": v, "x": _x(v, end)} for v in ticks],
        "yticks": [{"v": v, "y": _y(v)} for v in (0.0, 0.5, 1.0)],
        "legend": [{"domain": d, "color": COLORS[i % len(COLORS)]} for i, d in enumerate(m["domains"])],
        "panels": [_panel(t, end, m["domains"], m["threshold"]) for t in tutors],
        "undomained_probes": m["undomained_probes"],
    }
