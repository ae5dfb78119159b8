"""``HtmlRoute``: the dashboard's route class, and its error page. Domain errors and bad path or query
parameters become an HTML error page (not the API's JSON). Its own module so that the pages, the sign-in
routes and the app's 404 handler (``app.web.install``) share it without importing each other."""

from __future__ import annotations

from typing import Callable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.errors import DomainError, field_errors
from app.web.templating import render


class HtmlRoute(APIRoute):
    """Renders domain errors and bad path/query parameters as an HTML error page."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return error_page(request, exc.status_code, exc.message)
            except RequestValidationError as exc:
                where = {str(e.get("loc", ("",))[0]) for e in exc.errors()}
                status = 404 if where == {"path"} else 422
                msg = "; ".join(f"{f['path']}: {f['message']}" for f in field_errors(exc))
                return error_page(request, status, "page not found" if status == 404 else msg)

        return route


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "message": message}, block="content",
                  status_code=status)
