"""HTML pages of the dashboard. Routes parse, call one service, render (full page or one block).

Reads go through the page read models (``app.services.run_views``, ``app.services.exchange_views``),
presented by ``app.web.presenters`` (SVG geometry, heatmaps, the concept highlight); writes go through the same
services as the REST API (runs, overrides, approvals, replays), so the browser and a script are held
to the same rules. Domain errors become HTML error pages (or inline errors inside the form that caused
them), never JSON: this router's routes render their own errors (``HtmlRoute``).
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.errors import Conflict, Invalid, NotFound, TooManyRequests
from app.services import SessionFactory, approvals, exchange_views, overrides, replays, run_views, runs, workers
from app.services.overrides import GATING_MODES
import app.web.forms as forms
import app.web.presenters as presenters
from app.web.csrf import verify_csrf
from app.web.form_models import (ApprovalForm, ExchangeOverrideForm, ForkForm, LaunchForm, ReplayForm,
                                 RunOverrideForm, first_error, inline_errors)
from app.web.routing import HtmlRoute, error_page
from app.web.templating import is_htmx, render, target_block, templates
from opcod_core.vocabulary import ANCHORING_CATEGORIES

router = APIRouter(route_class=HtmlRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])


def db_of(request: Request) -> SessionFactory:
    return request.app.state.db


def see_other(request: Request, url: str) -> Response:
    """After a successful form post: a 303 for plain browsers, ``HX-Redirect`` for htmx."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# --- runs list -------------------------------------------------------------------------------------------

@router.get("/", name="runs")
def runs_page(request: Request, before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None):
    data = run_views.runs_list(db_of(request), before=before)
    active = any(r["status"] in ("queued", "running", "paused") for r in data["items"])
    pool = workers.list_workers(db_of(request), request.app.state.settings.stale_after_s)
    waiting = any(r["status"] == "queued" for r in data["items"])
    return render(request, "runs.html", {"data": data, "active": active, "workers": pool, "waiting": waiting},
                  swappable=("runs_table",))


# --- launch -------------------------------------------------------------------------------------------------

@router.get("/runs/new", name="launch")
def launch_page(request: Request, preset: str = "tiny"):
    if preset not in forms.preset_names():
        raise Invalid.field("preset", f"unknown preset '{preset}'")
    return render(request, "launch.html", forms.preset_view(preset).context(), swappable=("launch_form",))


def _launch_form(request: Request, view: forms.LaunchView, status_code: int) -> Response:
    if is_htmx(request):
        return render(request, "launch.html", view.context(), block="launch_form", status_code=status_code)
    return render(request, "launch.html", view.context(), status_code=status_code)


@router.post("/runs/new")
async def launch_submit(request: Request, form: Annotated[LaunchForm, Form()]):
    """Launch a run; or, for the form's own buttons, answer the form again: a student row added or removed
    (``row_action``), or the chosen preset loaded (``load_preset``, the select's change without JavaScript)."""
    values = form.values()
    if form.load_preset and form.preset in forms.preset_names():
        return _launch_form(request, forms.preset_view(form.preset), 200)
    if form.row_action:
        view, done = forms.row_action_view(values)
        return _launch_form(request, view, 200 if done else 422)
    result = forms.build_config(values)
    errors = result.errors
    if result.config is not None:
        try:
            detail = await run_in_threadpool(runs.create_run, db_of(request), result.config.to_dict(),
                                             request.app.state.settings.runs_dir, request.app.state.run_policy)
        except Invalid as exc:
            errors = forms.service_errors(exc.fields or [{"path": "", "message": exc.message}],
                                          len(result.config.students))
        else:
            return see_other(request, f"/runs/{detail.id}")
    return _launch_form(request, forms.posted_view(values, errors), 422)


# --- one run --------------------------------------------------------------------------------------------------

RUN_BLOCKS = tuple(run_views.RUN_BLOCK_PARTS)


def _run_ctx(request: Request, run_id: int, block: str | None = None, **extra) -> dict[str, Any]:
    """The run page's context; for one block (an htmx refresh or a form's answer), only that block's reads."""
    page = presenters.run_page(run_views.run_page(db_of(request), run_id, block=block))
    return {"p": page, "run": page["run"], "gating_modes": GATING_MODES, "last_event_id": page.get("last_event_id"),
            "override_errors": {}, "override_values": {}, **extra}


@router.get("/runs/{run_id}", name="run")
def run_page(request: Request, run_id: int):
    block = target_block(request, RUN_BLOCKS, default="") if is_htmx(request) else ""
    return render(request, "run.html", _run_ctx(request, run_id, block=block or None), swappable=RUN_BLOCKS)


@router.get("/runs/{run_id}/charts.json", name="run_charts")
def run_charts(request: Request, run_id: int):
    return JSONResponse(run_views.chart_data(db_of(request), run_id))


def _control(action: Callable[[SessionFactory, int], Any]):
    async def handler(request: Request, run_id: int):
        error = None
        try:
            await run_in_threadpool(action, db_of(request), run_id)
        except Conflict as exc:
            error = exc.message
        if not is_htmx(request) and error is None:
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        ctx = await run_in_threadpool(_run_ctx, request, run_id, "run_status", control_error=error)
        return render(request, "run.html", ctx, block="run_status", status_code=409 if error else 200)
    return handler


router.add_api_route("/runs/{run_id}/pause", _control(runs.pause_run), methods=["POST"])
router.add_api_route("/runs/{run_id}/resume", _control(runs.resume_run), methods=["POST"])
router.add_api_route("/runs/{run_id}/cancel", _control(runs.cancel_run), methods=["POST"])


@router.post("/runs/{run_id}/delete")
async def run_delete(request: Request, run_id: int):
    await run_in_threadpool(runs.delete_run, db_of(request), run_id, request.app.state.settings.runs_dir)
    return see_other(request, "/")


@router.post("/runs/{run_id}/overrides")
async def run_override(request: Request, run_id: int, form: Annotated[RunOverrideForm, Form()]):
    errors: dict[str, str] = {}
    try:
        await run_in_threadpool(overrides.create_run_override, db_of(request), run_id, form.request())
    except (Invalid, Conflict) as exc:
        errors = inline_errors(exc, rename=form.field_of())
    if not errors and not is_htmx(request):
        return RedirectResponse(f"/runs/{run_id}", status_code=303)
    # htmx swaps the overrides block (its reads only); a plain post gets the whole page back
    ctx = await run_in_threadpool(_run_ctx, request, run_id, "overrides" if is_htmx(request) else None,
                                  override_errors=errors, override_values=form.model_dump() if errors else {})
    return render(request, "run.html", ctx, block="overrides", status_code=422 if errors else 200)


@router.post("/runs/{run_id}/fork")
async def run_fork(request: Request, run_id: int, form: Annotated[ForkForm, Form()]):
    detail = await run_in_threadpool(runs.fork_run, db_of(request), run_id, form.request(),
                                     request.app.state.settings.runs_dir, request.app.state.run_policy)
    return see_other(request, f"/runs/{detail.id}")


# --- exchanges table -------------------------------------------------------------------------------------

@router.get("/runs/{run_id}/exchanges", name="exchanges")
def exchanges_page(request: Request, run_id: int, query: Annotated[exchange_views.ExchangePageQuery, Query()]):
    f, before, after_id = query.filters(), query.before, query.after
    page = exchange_views.exchanges_page(db_of(request), run_id, f, before=before, after=after_id)
    ctx = {"page": page, "filters": f, "filter_query": f.query_items(), "live": not f.active() and before is None,
           "categories": ANCHORING_CATEGORIES, "run": page["run"],
           "choices": presenters.exchange_filter_choices(page["run"], f)}
    if is_htmx(request) and after_id is not None:
        return render(request, "exchanges.html", ctx, block="new_rows")
    if is_htmx(request) and request.headers.get("HX-Target") == "more-rows":
        return render(request, "exchanges.html", {**ctx, "fragment_rows": True}, block="more_rows")
    return render(request, "exchanges.html", ctx, swappable=("table", "more_rows"))


# --- one exchange --------------------------------------------------------------------------------------------

EXCHANGE_BLOCKS = ("override_panel", "replays")


def _exchange_ctx(request: Request, exchange_id: int, **extra) -> dict[str, Any]:
    d = presenters.exchange(exchange_views.exchange_detail(db_of(request), exchange_id))
    return {"d": d, "ex": d["exchange"], "run": d["run"], "override_error": None, "override_text": None,
            "replay_error": None, **extra}


@router.get("/exchanges/{exchange_id}", name="exchange")
def exchange_page(request: Request, exchange_id: int):
    return render(request, "exchange.html", _exchange_ctx(request, exchange_id), swappable=EXCHANGE_BLOCKS)


@router.post("/exchanges/{exchange_id}/override")
async def exchange_override(request: Request, exchange_id: int, form: Annotated[ExchangeOverrideForm, Form()]):
    error = None
    try:
        await run_in_threadpool(overrides.create_exchange_override, db_of(request), exchange_id, form.request())
    except (Invalid, Conflict) as exc:
        error = first_error(exc)
    if error is None and not is_htmx(request):
        return RedirectResponse(f"/exchanges/{exchange_id}#override", status_code=303)
    ctx = await run_in_threadpool(_exchange_ctx, request, exchange_id, override_error=error,
                                  override_text=form.text if error else None)
    return render(request, "exchange.html", ctx, block="override_panel", status_code=422 if error else 200)


@router.post("/exchanges/{exchange_id}/replay")
async def exchange_replay(request: Request, exchange_id: int, form: Annotated[ReplayForm, Form()]):
    error = None
    try:
        rp = await run_in_threadpool(replays.create_replay, db_of(request), exchange_id, form.request(),
                                     request.app.state.settings.max_open_replays)
    except (Invalid, Conflict, TooManyRequests) as exc:
        error = first_error(exc)
    if error is None and not is_htmx(request):
        return RedirectResponse(f"/exchanges/{exchange_id}#replay-{rp.id}", status_code=303)
    ctx = await run_in_threadpool(_exchange_ctx, request, exchange_id, replay_error=error)
    return render(request, "exchange.html", ctx, block="replays", status_code=422 if error else 202)


@router.get("/exchanges/{exchange_id}/replays/{replay_id}", name="replay")
def replay_fragment(request: Request, exchange_id: int, replay_id: int):
    r = presenters.replay(exchange_views.replay_view(db_of(request), exchange_id, replay_id))
    return templates.TemplateResponse(request, "partials/replay.html", {"request": request, "r": r,
                                                                         "exchange_id": exchange_id})


# --- approvals ---------------------------------------------------------------------------------------------

@router.get("/runs/{run_id}/approvals", name="approvals")
def approvals_page(request: Request, run_id: int):
    data = presenters.approvals(exchange_views.approvals_queue(db_of(request), run_id))
    return render(request, "approvals.html", {"data": data, "run": data["run"], "errors": {}},
                  swappable=("queue",))


@router.post("/approvals/{approval_id}")
async def approval_decide(request: Request, approval_id: int, form: Annotated[ApprovalForm, Form()]):
    run_id, error = form.run_id, None
    try:
        run_id = (await run_in_threadpool(approvals.decide, db_of(request), approval_id, form.request())).run_id
    except (Invalid, Conflict) as exc:
        error = first_error(exc)
    if run_id is None:
        raise NotFound(f"approval {approval_id} not found")
    if error is None and not is_htmx(request):
        return RedirectResponse(f"/runs/{run_id}/approvals", status_code=303)
    data = presenters.approvals(await run_in_threadpool(exchange_views.approvals_queue, db_of(request), run_id))
    errors = {}
    if error:  # next to the item when it is still waiting, else at the top of the queue
        errors[approval_id if any(a["id"] == approval_id for a in data["pending"]) else 0] = error
    return render(request, "approvals.html", {"data": data, "run": data["run"], "errors": errors},
                  block="queue", status_code=422 if error else 200)


# --- compare -------------------------------------------------------------------------------------------------

@router.get("/compare", name="compare")
def compare_page(request: Request, runs: str | None = None):
    picks = ",".join(request.query_params.getlist("pick"))
    ids = exchange_views.parse_run_ids(",".join(x for x in (runs, picks) if x))
    recent = run_views.runs_list(db_of(request), limit=30)["items"]
    data = presenters.compare(run_views.compare_data(db_of(request), ids) if ids else None)
    return render(request, "compare.html", {"data": data, "ids": ids, "recent": recent})
