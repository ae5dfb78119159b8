"""Jinja2 environment of the dashboard and the "one URL, two renderings" helper.

Every page template extends ``base.html`` and puts its main content in a block ``content``; live or
swappable parts are further named blocks. A request from htmx (``HX-Request`` header) gets one block
only: the one named by the id of the element it targets (``HX-Target: run-status`` -> block
``run_status``) when the page lists that block as swappable, else ``content``. A plain request gets
the whole page. Autoescaping is on for every template; no filter here ever marks model text safe.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from fastapi import Request
from jinja2_fragments.fastapi import Jinja2Blocks
from markupsafe import Markup
from starlette.responses import Response

from app.web.csrf import csrf_input, csrf_token
from opcod_core.vocabulary import RUN_OVERRIDE_LABELS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))
env = templates.env
env.autoescape = True  # every template, whatever its extension
env.trim_blocks = True
env.lstrip_blocks = True
env.globals.update(csrf_input=csrf_input, csrf_token=csrf_token)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request", "").lower() == "true"


def target_block(request: Request, swappable: Iterable[str], default: str = "content") -> str:
    target = request.headers.get("HX-Target", "").strip().replace("-", "_")
    return target if target in set(swappable) else default


#: Defence in depth behind autoescaping: only our own scripts run (no inline script, no eval), so even
#: markup that slipped through could not execute. Inline *styles* stay allowed (heatmap levels).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def render(request: Request, name: str, context: dict[str, Any], *, swappable: Iterable[str] = (),
           block: str | None = None, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The full page, or (for htmx) one block: ``block`` if given, else the one the request targets."""
    ctx = {"request": request, **context}
    headers = {"Content-Security-Policy": CSP, **(headers or {})}
    if is_htmx(request):
        name_ = block or target_block(request, swappable)
        return templates.TemplateResponse(request, name, ctx, block_name=name_, status_code=status_code,
                                          headers=headers)
    return templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=headers)


# --- filters (numbers and dates only; text goes through autoescape untouched) -----------------------

def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(f)
    if f != 0 and (abs(f) < 10 ** -digits or abs(f) >= 1e6):
        return f"{f:.{digits}g}"
    return f"{f:.{digits}f}"


def pct(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{100 * float(v):.{digits}f}%"


def when(dt: datetime | None) -> str:
    if dt is None:
        return "–"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def tojson_script(data: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` island: ``<``, ``>``, ``&`` and line separators are
    escaped so no string inside (model text included) can close the script element."""
    text = json.dumps(data, allow_nan=False, default=str, separators=(",", ":"))
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(text)


env.filters.update(fmt=fmt, pct=pct, when=when, duration=duration, tojson_script=tojson_script)

#: The shared macros as a global (``ui.heatmap(...)``): a block rendered alone by jinja2-fragments does
#: not see imports made outside it, a global it always sees.
env.globals["ui"] = env.get_template("partials/macros.html").module
env.globals["run_override_labels"] = {k.value: label for k, label in RUN_OVERRIDE_LABELS.items()}
