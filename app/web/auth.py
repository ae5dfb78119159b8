"""Sign-in for the dashboard when the server has a token (``OPCOD_API_TOKEN``).

Browsers cannot send a bearer header from a link, a form or an EventSource, so the dashboard trades
the token once for an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token (see
``app.guard.Guard``); scripts keep using ``Authorization: Bearer``. Without a token the server is a
loopback-only, single-user install and there is nothing to sign in to.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from app.guard import SESSION_COOKIE, session_cookie_value
from app.web.csrf import verify_csrf
from app.web.pages import HtmlRoute
from app.web.templating import render

router = APIRouter(route_class=HtmlRoute, dependencies=[Depends(verify_csrf)])


def _safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect would turn the login form into a phishing aid."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


@router.get("/login", name="login")
def login_page(request: Request, next: str | None = None):
    if not request.app.state.settings.api_token:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login_submit(request: Request):
    form = await request.form()
    token = request.app.state.settings.api_token
    target = _safe_next(str(form.get("next") or "/"))
    if not token:
        return RedirectResponse("/", status_code=303)
    if not secrets.compare_digest(str(form.get("token") or "").encode(), token.encode()):
        return render(request, "login.html", {"next": target, "error": "That token is not the server's token."},
                      status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_cookie_value(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response
