"""Sign-in for the dashboard when the server has a token (``OPCOD_API_TOKEN``).

Browsers cannot send a bearer header from a link, a form or an EventSource, so the dashboard trades
the token once for a signed session (HttpOnly, SameSite=Strict, expiring; see ``app.guard.Guard``) holding
a fingerprint of the token; ``/logout`` ends it. Failed sign-ins count towards the per-address limit
(``app.guard.FailureLimiter``). Scripts keep using ``Authorization: Bearer``. Without a token the server is a
loopback-only, single-user install and there is nothing to sign in to.
"""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from app.guard import token_fingerprint
from app.web.csrf import verify_csrf
from app.web.routing import HtmlRoute
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
    limiter, client = request.app.state.auth_limiter, request.client.host if request.client else "local"
    wait = limiter.retry_after(client)
    if wait is not None:
        return render(request, "login.html", {"next": target, "error": f"Too many failed sign-ins from this "
                      f"address: try again in {wait:.0f} s."}, status_code=429, headers={"Retry-After": f"{wait:.0f}"})
    if not secrets.compare_digest(str(form.get("token") or "").encode(), token.encode()):
        limiter.fail(client)
        return render(request, "login.html", {"next": target, "error": "That token is not the server's token."},
                      status_code=401)
    request.session.clear()  # a new session (and CSRF token) at sign-in: no fixation
    request.session.update(auth=token_fingerprint(token), auth_at=time.time())
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request):
    request.session.clear()
    target = "/login" if request.app.state.settings.api_token else "/"
    return RedirectResponse(target, status_code=303)
