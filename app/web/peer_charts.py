"""The run page's and the compare page's charts of N students (issue 17: co-distillation among N
specialists), as the templates draw them; ``app.web.charts`` holds the shared geometry.

- **Pareto small multiples**: one small panel per student, in position order, all on the same axes. A
  plot has two axes, a run up to eight domains: with two domains the axes are the two domains (as the
  two-student page always drew them); with more, each student's x is its own strong domain and y the mean
  of the other domains, so "up and to the right" means the same thing in every panel. The shaded region
  and the trajectory are in that projection; the verdict "Pareto-improved" is the paper's rule over every
  domain, and the caption lists every domain's first and last accuracy.
- **Δ vs τ**: each student's cognizance gap per round as one series (a line through its rounds; filled
  markers where it may tutor, hollow where it is silent; ± one SE) against the run's τ as a step line,
  with a legend: the colour of a student is the same in both charts.
- **Shared students on the compare page**: the accuracy change of each shared student per domain in
  every compared run, side by side with the reference run (``app.services.peer_compare``); absent cells
  say why instead of showing a zero.

Numbers and CSS classes only: names are text the templates escape.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from app.web.charts import COLORS, PARETO_W, nice_ceiling, pareto_panel, scale

SMALL_W = 200          # a small multiple's side when a run has more than two students
DELTA_W, DELTA_H = 420, 220


def color_of(i: int) -> str:
    return COLORS[i % len(COLORS)]


# --- Pareto small multiples --------------------------------------------------------------------------------

def axes_of(domains: list[str], strong_domain: str | None, by_own: bool = False) -> tuple[str, list[str]] | None:
    """(the x domain, the domains averaged on y), or None when fewer than two domains are known. Two
    domains are drawn in their order unless ``by_own`` (the student's own domain on x, always)."""
    if len(domains) < 2:
        return None
    if len(domains) == 2 and not by_own:
        return domains[0], [domains[1]]
    own = strong_domain if strong_domain in domains else domains[0]
    return own, [d for d in domains if d != own]


def project(series: dict[str, Any], domains: list[str], by_own: bool = False) -> dict[str, Any]:
    """A student's trajectory (accuracy per domain after each round) as (a, b) points on ``axes_of``."""
    ax = axes_of(domains, series.get("strong_domain"), by_own)
    pts = [] if ax is None else [
        {"round": p["round"], "a": p["scores"][ax[0]], "b": fmean(p["scores"][d] for d in ax[1]),
         "scores": p["scores"]} for p in series["points"]]
    return {**series, "points": pts, "x_domain": ax[0] if ax else None, "y_domains": ax[1] if ax else []}


def _axis_names(domains: list[str], x_domain: str | None, y_domains: list[str]) -> tuple[str, str]:
    if len(domains) == 2 or x_domain is None:
        return (domains[0], domains[1]) if len(domains) == 2 else ("domain A", "domain B")
    return f"{x_domain} (own)", f"mean of the other {len(y_domains)}"


def pareto_multiples(series: list[dict[str, Any]], domains: list[str]) -> dict[str, Any]:
    """One panel per student (position order) on the same axes; small, on a card of the page's whole
    width, when there are more than two; ``by_own`` when the axes are own domain against the others."""
    size = PARETO_W if len(series) <= 2 else SMALL_W
    panels = []
    for i, st in enumerate(series):
        proj = project(st, domains)
        panel = pareto_panel([proj], domains, st["student"], [color_of(i)], size=size,
                             axes=_axis_names(domains, proj["x_domain"], proj["y_domains"]))
        # with more than two domains the caption lists every domain (run_pareto.html), not the projection
        panels.append({**panel, "student": st["student"], "position": i, "domains": list(domains),
                       "x_domain": proj["x_domain"], "y_domains": proj["y_domains"],
                       "compact": len(proj["y_domains"]) > 1})
    return {"panels": panels, "wide": len(panels) > 2, "by_own": any(p["compact"] for p in panels),
            "domains": len(domains)}


def compare_panels(panels: list[dict[str, Any]], colors: list[str]) -> list[dict[str, Any]]:
    """The compare page's panel per student position, a line per run in the run's colour. Runs on the same
    two domains share those axes; otherwise every line is its student's own domain against the mean of
    the others (``axes_of``)."""
    out = []
    for p in panels:
        same = {tuple(s["domains"]) for s in p["series"]}
        doms = list(next(iter(same))) if len(same) == 1 else []
        proj = [project(s, s["domains"], by_own=len(doms) != 2) for s in p["series"]]
        axes = (doms[0], doms[1]) if len(doms) == 2 else ("own domain", "mean of the other domains")
        out.append(pareto_panel(proj, doms, p["title"], [colors[s["run_index"]] for s in p["series"]],
                                axes=axes))
    return out


# --- Δ per student and round against τ -------------------------------------------------------------------

def _in_force(gates: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """The newest record per (round, student): the one in force (a human decision after the automatic one)."""
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for g in gates:
        if g["student"]:
            latest[(g["round"], g["student"])] = g
    return latest


def _tau_line(latest, rounds: list[int], slot: float, x0: float, Y) -> dict[str, Any]:
    """τ of each round (its newest record's) as a step line across the round slots."""
    newest: dict[int, dict[str, Any]] = {}
    for (r, _), g in latest.items():
        if r not in newest or (g.get("id") or 0) > (newest[r].get("id") or 0):
            newest[r] = g
    steps = [{"round": r, "tau": newest[r]["tau"], "x0": round(x0 + slot * i + 4, 1),
              "x1": round(x0 + slot * (i + 1) - 4, 1), "y": Y(newest[r]["tau"])} for i, r in enumerate(rounds)]
    path = " ".join(f"{s['x0']},{s['y']} {s['x1']},{s['y']}" for s in steps)
    return {"steps": steps, "path": path}


def _series(name: str, si: int, n: int, rounds: list[int], latest, slot: float, x0: float, Y) -> dict[str, Any]:
    points = []
    for ri, r in enumerate(rounds):
        g = latest.get((r, name))
        if g is None:
            continue
        x = round(x0 + slot * (ri + 0.5) + (si - (n - 1) / 2) * min(18, slot / (n + 2)), 1)
        se = g.get("delta_se")
        points.append({"x": x, "y": Y(g["delta"]), "round": r, "delta": g["delta"], "delta_se": se,
                       "tau": g["tau"], "decision": g["decision"], "source": g["source"],
                       "se_bar": None if se is None else {"y_lo": Y(max(g["delta"] - se, 0.0)),
                                                          "y_hi": Y(g["delta"] + se)}})
    last = points[-1] if points else None
    return {"student": name, "position": si, "color": color_of(si), "points": points,
            "path": " ".join(f"{p['x']},{p['y']}" for p in points), "last": last}


def delta_chart(gates: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Δ per student and round (a series per student, position order; a student only the gate records
    name comes after them) against the τ step line; None before the first gate record."""
    latest = _in_force(gates)
    if not latest:
        return None
    names = list(dict.fromkeys([s["name"] for s in students] + [n for _, n in latest]))
    rounds = sorted({r for r, _ in latest})
    vmax = nice_ceiling(1.1 * max([g["delta"] + (g.get("delta_se") or 0.0) for g in latest.values()]
                                  + [g["tau"] for g in latest.values()] + [0.05]))
    w, h = DELTA_W, DELTA_H
    x0, x1, y0, y1 = 40, w - 12, h - 30, 12
    slot = (x1 - x0) / len(rounds)

    def Y(v: float) -> float:
        return scale(v, 0, vmax, y0, y1)

    series = [_series(n, si, len(names), rounds, latest, slot, x0, Y) for si, n in enumerate(names)]
    return {"w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "series": series,
            "marker_r": 6 if len(names) <= 4 else 5,
            "tau": _tau_line(latest, rounds, slot, x0, Y),
            "yticks": [{"v": round(vmax * t / 4, 4), "y": Y(vmax * t / 4)} for t in range(5)],
            "xticks": [{"round": r, "x": round(x0 + slot * (i + 0.5), 1)} for i, r in enumerate(rounds)]}


# --- the compare page's shared students --------------------------------------------------------------------

ABSENT = {"not_in_run": ("not in this run", "absent"), "not_evaluated": ("domain not evaluated", "absent"),
          "pending": ("no evaluation before and after training", "absent")}


def _signed(v: float) -> str:
    v = round(v, 3)
    return "0.000" if v == 0 else f"{v:+.3f}"


def _peer_cell(c: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, Any]:
    if c["state"] != "measured":
        why, text = ABSENT[c["state"]]
        return {**c, "text": text, "title": why, "css": "peer-cell peer-absent", "gap": None, "gap_text": None}
    gap = None if ref is None else ref["change"] - c["change"]
    trend = "up" if round(c["change"], 3) > 0 else "down" if round(c["change"], 3) < 0 else "flat"
    return {**c, "text": _signed(c["change"]), "css": f"peer-cell {trend}", "gap": gap,
            "gap_text": None if gap is None else f"#{ref['run_id']} − #{c['run_id']}: {_signed(gap)}",
            "title": f"{c['initial']:.3f} before training → {c['last']:.3f} after round {c['last_round']}"}


def peer_table(peers: dict[str, Any], colors_by_run: dict[int, str]) -> dict[str, Any]:
    """The shared students' table: a column per run (reference first, in its colour); per student and
    domain a cell per run with the change, and in the other runs' cells the reference's change minus
    theirs. Absent cells say why."""
    ref = peers["reference"]
    runs = [{**r, "color": colors_by_run.get(r["id"]), "reference": r["id"] == ref} for r in peers["runs"]]
    students = []
    for st in peers["students"]:
        rows = []
        for d in st["domains"]:
            ref_cell = next((c for c in d["cells"] if c["run_id"] == ref and c["state"] == "measured"), None)
            rows.append({"domain": d["domain"], "cells": [
                {**_peer_cell(c, None if c["run_id"] == ref else ref_cell), "reference": c["run_id"] == ref}
                for c in d["cells"]]})
        students.append({**st, "rows": rows})
    return {"reference": ref, "runs": runs, "students": students, "not_shared": peers["not_shared"]}
