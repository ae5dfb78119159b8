"""The timed reads of the store benchmark: every list, page and block a researcher's browser or script
asks for, through the real app in process (routing, the services, rendering), and the bare indexed SQL
that fetches the same rows, timed the same way.

Each probe is one request (or one SQL round) repeated ``reps`` times after ``warm`` untimed ones; the
figures are p50 and p95 in milliseconds. Detail probes walk through different exchanges (ids spread over
the whole table), so a cache of one row cannot flatter them.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import text

from app.services import encode_cursor

LIST_COLUMNS = ("e.id, e.run_id, e.key, e.round, e.direction, e.global_step, e.tutee, e.tutor, e.domain, e.correct, "
                "e.category, e.human_edited, e.origin_exchange_id, e.override_id, e.context_used, e.skipped, "
                "e.finish_reason, e.loss, e.created_at")
RUN_BLOCKS = ("run_status", "pareto", "gates", "breaks", "overrides", "feed")


@dataclass(frozen=True)
class Probe:
    name: str
    kind: str                  # floor | list | detail | page | block | sql
    call: Callable[[int], None]  # called with the repetition index


def percentiles(times_s: list[float]) -> dict[str, float]:
    ms = sorted(1000 * t for t in times_s)
    q = statistics.quantiles(ms, n=20, method="inclusive") if len(ms) > 1 else [ms[0]] * 19
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(q[18], 2)}


def time_probe(probe: Probe, reps: int, warm: int = 2) -> dict[str, float]:
    for i in range(warm):
        probe.call(i)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        probe.call(i)
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def _get(client, url: str, headers: dict | None = None) -> None:
    r = client.get(url, headers=headers or {})
    if r.status_code != 200:
        raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")


def filters(last_round: int) -> dict[str, str]:
    """Each filter of the exchange list with a value that selects rows (the rarest included)."""
    return {"domain": "domain=physics", "round": f"round={last_round}", "direction": "direction=2",
            "category": "category=empty", "no_feedback": "category=none", "correct": "correct=true",
            "human_edited": "human_edited=true", "tutee": "tutee=phys"}


def _sql_filters(last_round: int) -> dict[str, str]:
    return {"domain": "e.domain = 'physics'", "round": f"e.round = {last_round}", "direction": "e.direction = 2",
            "category": "e.category = 'empty'", "no_feedback": "e.category IS NULL", "correct": "e.correct = true",
            "human_edited": "e.human_edited = true", "tutee": "e.tutee = 'phys'"}


def app_probes(client, run_id: int, exchange_ids: list[int], last_round: int, seed: int = 0) -> list[Probe]:
    """The app's side: API lists and details, and the dashboard's pages and the run page's blocks; and the
    floor of any request (``/healthz``: the HTTP stack in process and ``SELECT 1``)."""
    rng = random.Random(seed)
    spread = [exchange_ids[rng.randrange(len(exchange_ids))] for _ in range(1000)]
    deep = encode_cursor(exchange_ids[min(len(exchange_ids) - 1, 200)])
    base = f"/api/v1/runs/{run_id}/exchanges?limit=50"
    probes = [Probe("floor: GET /healthz", "floor", lambda i: _get(client, "/healthz")),
              Probe("api list: first page", "list", lambda i: _get(client, base)),
              Probe("api list: deep cursor", "list", lambda i: _get(client, f"{base}&cursor={deep}"))]
    for name, q in filters(last_round).items():
        probes.append(Probe(f"api list: {name}", "list", lambda i, q=q: _get(client, f"{base}&{q}")))
    probes.append(Probe("api detail", "detail", lambda i: _get(client, f"/api/v1/exchanges/{spread[i % 1000]}")))
    probes += [Probe("page: run", "page", lambda i: _get(client, f"/runs/{run_id}")),
               Probe("page: exchanges", "page", lambda i: _get(client, f"/runs/{run_id}/exchanges")),
               Probe("page: exchange", "page", lambda i: _get(client, f"/exchanges/{spread[i % 1000]}")),
               Probe("page: run charts.json", "page", lambda i: _get(client, f"/runs/{run_id}/charts.json"))]
    for block in RUN_BLOCKS:
        hx = {"HX-Request": "true", "HX-Target": block}
        probes.append(Probe(f"block: {block}", "block", lambda i, hx=hx: _get(client, f"/runs/{run_id}", hx)))
    return probes


def sql_probes(conn, run_id: int, exchange_ids: list[int], last_round: int, seed: int = 0) -> list[Probe]:
    """The bare indexed SQL for the same rows: plain statements on a DBAPI connection, rows fetched and
    nothing else (no ORM, no validation, no rendering)."""
    rng = random.Random(seed)
    spread = [exchange_ids[rng.randrange(len(exchange_ids))] for _ in range(1000)]
    deep = exchange_ids[min(len(exchange_ids) - 1, 200)]

    def rows(sql: str, **params) -> None:
        conn.execute(text(sql), params).fetchall()

    lst = (f"SELECT {LIST_COLUMNS} FROM exchange e WHERE e.run_id = :run {{where}} ORDER BY e.id DESC LIMIT 51")
    feed = (f"SELECT {LIST_COLUMNS}, r.text, p.question FROM exchange e JOIN rollout r ON r.id = e.rollout_id "
            "JOIN prompt p ON p.id = r.prompt_id WHERE e.run_id = :run ORDER BY e.id DESC LIMIT {n}")

    def detail(i: int) -> None:
        rows("SELECT e.*, r.*, p.*, f.* FROM exchange e JOIN rollout r ON r.id = e.rollout_id JOIN prompt p "
             "ON p.id = r.prompt_id LEFT JOIN feedback f ON f.id = e.feedback_id WHERE e.id = :id", id=spread[i % 1000])

    def run_rows(i: int) -> None:
        rows("SELECT * FROM run WHERE id = :run", run=run_id)
        rows("SELECT * FROM student WHERE run_id = :run", run=run_id)
        rows(feed.format(n=20), run=run_id)
        rows("SELECT * FROM gate_record WHERE run_id = :run ORDER BY round, id", run=run_id)
        rows("SELECT * FROM eval_result WHERE run_id = :run", run=run_id)
        rows("SELECT * FROM step WHERE run_id = :run ORDER BY global_step DESC LIMIT 1", run=run_id)

    probes = [Probe("sql list: first page", "sql", lambda i: rows(lst.format(where=""), run=run_id)),
              Probe("sql list: deep cursor", "sql", lambda i: rows(lst.format(where="AND e.id < :b"), run=run_id, b=deep))]
    for name, where in _sql_filters(last_round).items():
        probes.append(Probe(f"sql list: {name}", "sql", lambda i, w=where: rows(lst.format(where="AND " + w), run=run_id)))
    probes += [Probe("sql detail", "sql", detail),
               Probe("sql exchanges page rows", "sql", lambda i: rows(feed.format(n=51), run=run_id)),
               Probe("sql run page rows", "sql", run_rows)]
    return probes


def check_same_rows(client, conn, run_id: int, last_round: int) -> int:
    """The comparison is fair only if both sides fetch the same rows: the API's first page of each list
    (unfiltered and each filter) holds exactly the ids the bare SQL returns. Raises when not; returns how
    many of the lists held rows (a rare filter can select none in a small run)."""
    lists = {"": "", **{name: q for name, q in filters(last_round).items()}}
    wheres = {"": "", **{name: "AND " + w for name, w in _sql_filters(last_round).items()}}
    nonempty = 0
    for name, q in lists.items():
        api = [x["id"] for x in client.get(f"/api/v1/runs/{run_id}/exchanges?limit=50&{q}").json()["items"]]
        sql = [r[0] for r in conn.execute(text(f"SELECT e.id FROM exchange e WHERE e.run_id = :run {wheres[name]} "
                                               "ORDER BY e.id DESC LIMIT 50"), {"run": run_id})]
        if api != sql:
            raise RuntimeError(f"list {name or 'unfiltered'}: the API's page {api[:5]}... is not the SQL's {sql[:5]}...")
        nonempty += bool(api)
    return nonempty


#: Which bare SQL a rendered page is compared with ("a page within 3x of the bare SQL for its rows").
PAGE_VS_SQL = {"page: exchanges": "sql exchanges page rows", "page: exchange": "sql detail",
               "page: run": "sql run page rows", "api list: first page": "sql list: first page",
               "api detail": "sql detail"}
