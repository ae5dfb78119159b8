"""Domain errors and the one JSON error format of the API.

Every error the API returns has the same shape::

    {"error": {"message": "...", "fields": [{"path": "rollout.n", "message": "..."}]}}

``fields`` is present (possibly empty) on every error; it lists the offending fields for validation
errors, with dotted paths relative to the request body (or the run config, for config errors) or the
query/path parameter's name. Services raise the domain errors below; the handlers registered by
``install_error_handlers`` turn them, FastAPI's request validation errors and Starlette's HTTP errors
into that shape. Bad input is always a 4xx: an unknown id is 404, an invalid body 422 (malformed JSON
400), a body over the size limit 413, an action that the object's state forbids 409.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError as DBAPIDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("opcod.api")


def _path(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc)


class DomainError(Exception):
    """Base class: a message, an HTTP status and optional field errors."""

    status_code = 400

    def __init__(self, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "fields": self.fields}}


class NotFound(DomainError):
    status_code = 404


class Invalid(DomainError):
    """422: the request is well-formed but its content is not acceptable (with field paths)."""

    status_code = 422

    @classmethod
    def field(cls, path: str, message: str) -> "Invalid":
        return cls(f"{path}: {message}" if path else message, [{"path": path, "message": message}])

    @classmethod
    def from_validation_error(cls, err: ValidationError, prefix: tuple[Any, ...] = (),
                              message: str = "invalid run config") -> "Invalid":
        fields = field_errors(err, prefix)
        return cls(message + ": " + "; ".join(f"{f['path']}: {f['message']}" for f in fields), fields)


class Forbidden(DomainError):
    """403: the request is understood but not allowed from where it came (e.g. a form without its CSRF token)."""

    status_code = 403


class Conflict(DomainError):
    """409: the object exists but its state does not allow this (e.g. pausing a finished run)."""

    status_code = 409


class TooManyRequests(DomainError):
    """429: a per-run cap is reached (e.g. open replays); try again when some have finished."""

    status_code = 429


class Unavailable(DomainError):
    """503: the server is at a capacity limit (e.g. open event streams); retry shortly."""

    status_code = 503


class PayloadTooLarge(DomainError):
    status_code = 413


def error_response(status: int, message: str, fields: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "fields": fields or []}}, status_code=status,
                        headers=headers)


#: Where FastAPI says a request value came from (the first element of its error locations).
_SOURCES = ("body", "query", "path", "header", "cookie")


def field_errors(err: ValidationError | RequestValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    """Every error of a pydantic or FastAPI validation as ``{"path", "message"}``: the field's dotted path
    (after ``prefix``; FastAPI's body/query/path location dropped, kept alone for a missing parameter)
    and pydantic's message without its "Value error, " prefix. The one place validation errors become
    field messages: the API's JSON errors, the pages' error pages and the forms' inline errors."""
    out = []
    for e in err.errors():
        loc = list(e.get("loc", ()))
        if isinstance(err, RequestValidationError) and loc and loc[0] in _SOURCES:
            where, loc = loc[0], loc[1:]
            if where != "body" and not loc:
                loc = [where]
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"path": _path((*prefix, *loc)) or "(body)", "message": message})
    return out


def _request_validation_fields(err: RequestValidationError) -> tuple[bool, list[dict[str, str]]]:
    return any(e.get("type") == "json_invalid" for e in err.errors()), field_errors(err)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed, fields = _request_validation_fields(exc)
        if malformed:
            return error_response(400, "malformed JSON body", fields)
        summary = "; ".join(f"{f['path']}: {f['message']}" for f in fields[:5])
        return error_response(422, f"invalid request: {summary}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(DBAPIDataError)
    async def _data(request: Request, exc: DBAPIDataError) -> JSONResponse:
        # A value the database refuses (out-of-range number, NUL byte) that validation let through:
        # bad input, so a 4xx; logged because validation should have caught it.
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(422, "a value in the request cannot be stored or compared by the database")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # a bug, never bad input
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
