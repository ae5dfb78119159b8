"""Token-level presentation: heatmap cells for per-token values, visible whitespace markers, and the
concept highlight. Model output is untrusted: these return pieces (text + flags + numbers) and the
templates escape every piece."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.services.reads import finite


def concept_pieces(text: str | None, concept: str | None) -> list[tuple[str, bool]]:
    """``text`` split into (piece, is_concept) with every case-insensitive occurrence of ``concept``
    marked; the template escapes each piece and wraps marked ones in <mark>."""
    text = text or ""
    c = (concept or "").strip()
    if not c:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in re.finditer(re.escape(c), text, flags=re.IGNORECASE):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


@dataclass
class Heatmap:
    """One row of per-token cells; ``level`` is |value| / max |value| in 0..1 (colour intensity)."""

    title: str
    kind: str  # "div" (non-negative) or "effect" (signed)
    cells: list[dict[str, Any]] = field(default_factory=list)
    vmax: float = 0.0
    mean: float | None = None


def heatmap(tokens: list[Any] | None, values: list[float] | None, title: str, kind: str = "div",
            vmax: float | None = None) -> Heatmap | None:
    """Cells for one heatmap row; pass ``vmax`` to put several rows on one colour scale."""
    if not values:
        return None
    toks = [str(t) for t in (tokens or [])]
    if len(toks) < len(values):
        toks += [f"#{i}" for i in range(len(toks), len(values))]
    vals = [(finite(v) or 0.0) for v in values]
    if vmax is None:
        vmax = max((abs(v) for v in vals), default=0.0)
    cells = []
    for i, (t, v) in enumerate(zip(toks, vals)):
        level = (abs(v) / vmax) if vmax > 0 else 0.0
        cells.append({"i": i, "token": display_token(t), "value": v, "level": round(level, 3),
                      "sign": "pos" if v > 0 else ("neg" if v < 0 else "zero"),
                      "label": f"{v:+.6f}" if kind == "effect" else f"{v:.6f}"})
    return Heatmap(title=title, kind=kind, cells=cells, vmax=vmax, mean=sum(vals) / len(vals))


def display_token(t: str) -> str:
    """Make tokenizer whitespace markers visible (BPE 'Ġ'/'Ċ', sentencepiece '▁') without hiding text."""
    return t.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def effect_values(div: list[float] | None, div_s: list[float] | None) -> list[float] | None:
    if not div or not div_s or len(div) != len(div_s):
        return None
    return [a - b for a, b in zip(div, div_s, strict=True)]
