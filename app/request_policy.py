"""``RequestPolicy``: which requests the server accepts at all, checked before authentication.

Why: a server on loopback without a token answers every web page the researcher has open. A page on any
site can send "simple" cross-site requests (a form post, a ``text/plain`` fetch in no-cors mode) whose
answers it cannot read but whose effects happen, and by rebinding its own DNS name to 127.0.0.1 it can
even read the answers. The rules, in order (each a 4xx with a message, before any route runs):

- **Host** (Starlette's ``TrustedHostMiddleware``, added by ``app.main.create_app`` around this one): the
  Host header must be a loopback name or one of ``settings.allowed_hosts``. That defeats DNS rebinding.
- **No token, loopback only**: without ``settings.api_token`` only loopback clients are served, and a
  request carrying forwarding headers (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``) is refused: a proxy
  in front would make every remote client look local. 403 (the CLI's bind check alone is not enough:
  ``uvicorn --factory app.main:create_app --host 0.0.0.0`` bypasses it). With a token shorter than
  ``MIN_REMOTE_TOKEN_LENGTH``, the same: loopback clients only.
- **Cross-site writes**: a POST, PUT, PATCH or DELETE whose ``Sec-Fetch-Site`` is ``cross-site`` or
  ``same-site`` (another port of localhost is the same site), or whose ``Origin`` is not this server's
  (compared with the Host header), is refused with 403. A client that sends neither is not a browser.
- **JSON bodies on the API** (``json_body_refusal``, applied by ``app.guard.Guard`` after authentication):
  an unsafe ``/api/`` request with a body must be ``application/json`` (or ``+json``), else 415: browsers cannot send that cross-site without a CORS preflight, which this server
  never grants.

The dashboard's forms also carry CSRF tokens (``app.web.csrf``): a second line for browsers that send
neither Origin nor Sec-Fetch-Site.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response

#: Shortest token with which the server serves clients on other machines (here and in ``opcod serve``).
MIN_REMOTE_TOKEN_LENGTH = 16
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # as Host headers name them
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip")


def is_loopback(host: str | None) -> bool:
    """A client address on this machine (``None``: a Unix socket, also local)."""
    if host is None:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def is_json(value: str) -> bool:
    kind = media_type(value)
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class RequestPolicy:
    """Pure ASGI middleware enforcing the rules of the module docstring (not the Host and JSON rules)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token_set = bool(token)
        self.short_token = bool(token) and len(token or "") < MIN_REMOTE_TOKEN_LENGTH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            status, message = refusal
            await error_response(status, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request is refused, else None."""
        headers: dict[bytes, bytes] = {}
        for key, value in scope.get("headers", ()):
            headers.setdefault(key.lower(), value)
        local = is_loopback((scope.get("client") or (None,))[0])
        if self.short_token and not local:
            return 403, (f"the API token is shorter than {MIN_REMOTE_TOKEN_LENGTH} characters, too short to guard "
                         "a server that other machines reach; set a longer OPCOD_API_TOKEN")
        if not self.token_set:
            if not local:
                return 403, ("this server has no API token, so it serves loopback clients only; set "
                             "OPCOD_API_TOKEN to serve other machines")
            forwarded = [h.decode() for h in FORWARDING_HEADERS if h in headers]
            if forwarded:
                return 403, (f"request forwarded by a proxy ({', '.join(forwarded)}) to a server with no API token; "
                             "set OPCOD_API_TOKEN to serve through a proxy")
        if scope["method"] not in UNSAFE_METHODS:
            return None
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = headers.get(b"origin")
        if origin is not None:
            own = headers.get(b"host", b"").decode("latin-1").lower()
            text = origin.decode("latin-1").strip()
            if text.lower() == "null" or urlsplit(text).netloc.lower() != own:
                return 403, f"cross-site request refused (Origin {text!r} is not this server)"
        return None


def json_body_refusal(scope: Scope) -> tuple[int, str] | None:
    """The JSON-bodies rule (checked by ``app.guard.Guard`` after authentication, so that an unauthenticated
    client learns nothing about its body): (415, message) or None."""
    headers = {key.lower(): value for key, value in scope.get("headers", ())}
    if scope["method"] in UNSAFE_METHODS and scope["path"].startswith("/api/") and has_body(headers) and \
            not is_json(headers.get(b"content-type", b"").decode("latin-1")):
        return 415, "request body must be JSON (Content-Type: application/json)"
    return None


def has_body(headers: dict[bytes, bytes]) -> bool:
    if b"transfer-encoding" in headers:
        return True
    try:
        return int(headers.get(b"content-length", b"0")) > 0
    except ValueError:
        return True  # Guard answers the malformed length
