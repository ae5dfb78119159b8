"""CSRF tokens for the dashboard's forms (synchroniser tokens kept in the signed session).

Why, on top of ``app.request_policy``'s Origin / Sec-Fetch-Site check: a browser that sends neither
header (old ones, some privacy extensions strip Origin) would otherwise let any site post our forms. Each
dashboard session (Starlette's ``SessionMiddleware``: a cookie signed with the server's secret, SameSite
Strict, expiring after ``settings.session_max_age_s``) holds one random token; every form carries it as
the hidden field ``csrf_token`` (``csrf_input`` in the templates) and htmx sends it as the
``X-CSRF-Token`` header too (``hx-headers`` on the page body). ``verify_csrf`` runs before every HTML
route: a write without the session's token is refused with 403 before the route reads anything.
"""

from __future__ import annotations

import secrets

from fastapi import Request
from markupsafe import Markup, escape

from app.errors import Forbidden

FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def csrf_token(request: Request) -> str:
    """The session's token (created with the session on first use)."""
    token = request.session.get(FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[FIELD] = token
    return token


def csrf_input(request: Request) -> Markup:
    """The hidden form field that carries the token."""
    return Markup(f'<input type="hidden" name="{FIELD}" value="{escape(csrf_token(request))}">')


async def verify_csrf(request: Request) -> None:
    """Dependency of every HTML route: a write must carry the session's token (header or form field)."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(FIELD)
    given = request.headers.get(HEADER)
    if given is None and media_type_is_form(request.headers.get("content-type", "")):
        value = (await request.form()).get(FIELD)
        given = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not expected or given is None \
            or not secrets.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the form's security token is missing or has expired: reload the page and try again")


def media_type_is_form(value: str) -> bool:
    kind = value.split(";", 1)[0].strip().lower()
    return kind in ("application/x-www-form-urlencoded", "multipart/form-data")
