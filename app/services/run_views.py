"""Page read models of the run list, the run page, its charts and the compare page: each function reads
in one unit of work and returns rows and series (no geometry: ``app.web.presenters`` draws)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.db import session_scope
from app.models import Approval, Checkpoint, EvalResult, Event, Exchange, GateRecord, Override, Run, Step
from app.services import SessionFactory, keyset_page
from app.services.flows import flow_matrix
from app.services.trust import trust_view
from app.services.metrics import break_summary
from app.services.peer_compare import shared_students
from app.services.reads import (FEED_LIMIT, PAGE_LIMIT, domains_of, feed_query, feed_rows, finite, gate_dict,
                                override_dict, pareto_series, run_or_404, run_summary, step_rows)
from opcod_core.dotted import get_path
from opcod_core.vocabulary import ANCHORING_CATEGORIES


def runs_list(sf: SessionFactory, before: int | None = None, limit: int = PAGE_LIMIT) -> dict[str, Any]:
    """Newest runs first (keyset on id), each with students, domains, progress and latest accuracies."""
    limit = max(1, min(limit, 200))
    with session_scope(sf) as s:
        runs, more = keyset_page(s, select(Run), Run.id, limit, before=before)
        ids = [r.id for r in runs]
        evals: dict[int, list[EvalResult]] = {}
        if ids:
            for e in s.scalars(select(EvalResult).where(EvalResult.run_id.in_(ids))):
                evals.setdefault(e.run_id, []).append(e)
        items = [run_summary(r, evals.get(r.id, [])) for r in runs]
        return {"items": items, "next_before": runs[-1].id if more and runs else None}


def exchange_feed(sf: SessionFactory, run_id: int, limit: int = FEED_LIMIT) -> list[dict[str, Any]]:
    """The newest ``limit`` exchanges of a run (never all of them)."""
    with session_scope(sf) as s:
        run_or_404(s, run_id)
        q = feed_query(run_id).order_by(Exchange.id.desc()).limit(max(1, min(limit, 200)))
        return feed_rows(s, q)


def _part_config(s, run: Run) -> dict[str, Any]:
    return {"config": _config_summary(run.config or {})}


def _part_counts(s, run: Run) -> dict[str, Any]:
    return {"counts": _counts(s, run)}


def _part_last_step(s, run: Run) -> dict[str, Any]:
    last = s.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.global_step.desc()).limit(1)).first()
    if last is None:
        return {"last_step": None, "tokens_per_s": None}
    return {"last_step": {"global_step": last.global_step, "loss": last.loss, "tutee": last.tutee,
                          "tutor": last.tutor, "metrics": dict(last.metrics or {})},
            "tokens_per_s": finite((last.metrics or {}).get("throughput/rollout_tokens_per_s"))}


def _part_gates(s, run: Run) -> dict[str, Any]:
    return {"gates": [gate_dict(g) for g in s.scalars(select(GateRecord).where(GateRecord.run_id == run.id)
                                                      .order_by(GateRecord.round, GateRecord.id))]}


def _part_pareto(s, run: Run) -> dict[str, Any]:
    # the Pareto plot and the latest accuracies are test-split figures (run_summary, pareto_series)
    evals = list(s.scalars(select(EvalResult).where(EvalResult.run_id == run.id, EvalResult.split == "test")
                           .order_by(EvalResult.round, EvalResult.id)))
    summary = run_summary(run, evals)
    return {"run": summary, "pareto_series": pareto_series(evals, summary["students"], summary["domains"])}


def _part_breaks(s, run: Run) -> dict[str, Any]:
    return {"break": break_summary(s, run.id)}


def _part_flows(s, run: Run) -> dict[str, Any]:
    """The tutoring-flow matrix (``app.services.flows``; a few GROUP BY reads, never the exchanges)."""
    return {"flows": flow_matrix(s, run).model_dump()}


def _part_trust(s, run: Run) -> dict[str, Any]:
    """Tutor trust (``app.services.trust``; one GROUP BY over the probes and the run's trust changes)."""
    return {"trust": trust_view(s, run).model_dump()}


def _part_overrides(s, run: Run) -> dict[str, Any]:
    return {"overrides": [override_dict(o) for o in s.scalars(
        select(Override).where(Override.run_id == run.id, Override.exchange_id.is_(None),
                               Override.exchange_key.is_(None))
        .order_by(Override.id.desc()).limit(20))]}


def _part_feed(s, run: Run) -> dict[str, Any]:
    feed = feed_rows(s, feed_query(run.id).order_by(Exchange.id.desc()).limit(FEED_LIMIT))
    return {"feed": feed, "feed_limit": FEED_LIMIT, "latest_exchange_id": feed[0]["id"] if feed else 0}


def _part_page(s, run: Run) -> dict[str, Any]:
    """What only the full page shows: checkpoints, and the event id the live page subscribes after (it
    already shows everything before)."""
    return {"checkpoints": [{"id": c.id, "tag": c.tag, "round": c.round, "created_at": c.created_at}
                            for c in s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id,
                                                                        Checkpoint.pruned.is_(False))
                                               .order_by(Checkpoint.id.desc()).limit(20))],
            "last_event_id": s.scalar(select(func.max(Event.id)).where(Event.run_id == run.id)) or 0}


# The run page's parts, and the parts each block that the page refreshes on its own reads (run.html's
# blocks; an SSE event refreshes one block, which reads only its parts, not the whole page).
RUN_PARTS = {"config": _part_config, "counts": _part_counts, "last_step": _part_last_step, "gates": _part_gates,
             "pareto": _part_pareto, "breaks": _part_breaks, "flows": _part_flows, "trust": _part_trust,
             "overrides": _part_overrides, "feed": _part_feed, "page": _part_page}
RUN_BLOCK_PARTS: dict[str, tuple[str, ...]] = {
    "run_status": ("config", "counts", "last_step", "breaks"), "pareto": ("pareto",), "gates": ("gates",),
    "breaks": ("breaks",), "flows": ("flows",), "trust": ("trust",), "overrides": ("config", "overrides"),
    "feed": ("counts", "feed")}


def run_page(sf: SessionFactory, run_id: int, block: str | None = None) -> dict[str, Any]:
    """The live run page's data (except the chart series, ``chart_data``), or only what ``block`` shows
    (a name of ``RUN_BLOCK_PARTS``). Every part reads in the same unit of work."""
    parts = RUN_BLOCK_PARTS[block] if block is not None else tuple(RUN_PARTS)
    with session_scope(sf) as s:
        run = run_or_404(s, run_id)
        page: dict[str, Any] = {"run": run_summary(run, [])}
        for name in parts:
            page.update(RUN_PARTS[name](s, run))
        return page


def _config_summary(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run config's headline settings, as the run page lists them."""
    return {"rounds": get_path(cfg, "schedule.rounds"), "K": get_path(cfg, "schedule.steps_per_direction"),
            "n": get_path(cfg, "rollout.n"), "batch": get_path(cfg, "rollout.batch_prompts"),
            "tau": get_path(cfg, "gating.tau"), "mode": get_path(cfg, "gating.mode"),
            "context_mode": cfg.get("context_mode"), "divergence": get_path(cfg, "loss.divergence"),
            "lr": get_path(cfg, "optim.lr"), "approval": get_path(cfg, "tutor.approval"),
            "backend": cfg.get("backend"), "seed": cfg.get("seed"), "algorithm": cfg.get("algorithm"),
            "source": get_path(cfg, "data.source")}


def _counts(s, run: Run) -> dict[str, int]:
    """Exchanges (the run's stored count), steps and the pending overrides and approvals of a run."""
    def count(model, *where) -> int:
        return s.scalar(select(func.count()).select_from(model).where(model.run_id == run.id, *where)) or 0
    return {"exchanges": run.exchange_count, "steps": count(Step),
            "pending_overrides": count(Override, Override.status == "pending"),
            "pending_approvals": count(Approval, Approval.status == "pending")}


def _series_from_steps(steps: list[Step], students: list[str]) -> dict[str, Any]:
    x = [st.global_step for st in steps]

    def col(key: str) -> list[float | None]:
        return [finite((st.metrics or {}).get(key)) for st in steps]

    loss_by = {n: [(finite(st.loss) if st.tutee == n else None) for st in steps] for n in students}
    return {
        "x": x,
        "loss": {"labels": [f"loss ({n} tutee)" for n in students], "series": [loss_by[n] for n in students]},
        "anchoring": {"labels": list(ANCHORING_CATEGORIES), "series": [col(f"anchoring/{c}") for c in ANCHORING_CATEGORIES]},
        "kept_rate": {"labels": ["kept rate"], "series": [col("anchoring/kept_rate")]},
        "break_rate": {"labels": ["break rate"], "series": [col("break/rate")]},
        "throughput": {"labels": ["rollout tokens/s"], "series": [col("throughput/rollout_tokens_per_s")]},
        "accuracy": {"labels": ["rollout accuracy"], "series": [col("rollout/accuracy")]},
        "finish": {"labels": ["stopped (EOS)", "stop string", "cut at limit", "no parsable answer"],
                   "series": [col("rollout/finish_eos"), col("rollout/finish_stop"), col("rollout/finish_length"),
                              col("rollout/parse_failure")]},
        "length": {"labels": ["mean rollout tokens"], "series": [col("rollout/mean_length")]},
        "weight_l2": {"labels": [f"‖θ−θ₀‖ ({n} tutee)" for n in students],
                      "series": [[(finite((st.metrics or {}).get("train/weight_l2")) if st.tutee == n else None)
                                  for st in steps] for n in students]},
        "grad_norm": {"labels": ["grad norm"], "series": [col("train/grad_norm")]},
    }


#: At most this many steps per chart (plus the last): a chart is a few hundred pixels wide, and reading
#: and decoding every step's metrics took 1.4 s per refresh at 15,625 steps (benchmarks/store_scale.py).
MAX_CHART_POINTS = 2000


def chart_steps(s, run_id: int) -> list[Step]:
    """The run's steps in order, every ``stride``-th one (and the last) when there are more than
    ``MAX_CHART_POINTS``; the stride is chosen in SQL, so only the drawn steps are read."""
    n, last = s.execute(select(func.count(), func.max(Step.global_step)).where(Step.run_id == run_id)).one()
    q = select(Step).where(Step.run_id == run_id).order_by(Step.global_step)
    stride = -(-n // MAX_CHART_POINTS) if n else 1
    if stride > 1:
        q = q.where((Step.global_step % stride == 0) | (Step.global_step == last))
    return list(s.scalars(q))


def chart_data(sf: SessionFactory, run_id: int) -> dict[str, Any]:
    """Per-step series for the run page's uPlot charts (x = global step; missing values are null; at most
    ``MAX_CHART_POINTS`` steps, evenly strided, on a long run)."""
    with session_scope(sf) as s:
        run = run_or_404(s, run_id)
        students = [st.name for st in run.students]
        steps = chart_steps(s, run_id)
        out = _series_from_steps(steps, students)
        loss_key = "loss/" + str(get_path(run.config or {}, "loss.divergence", "jsd"))
        out["loss"]["title"] = loss_key
        # mean divergence of each step's exchanges (stored with the step by the recorder)
        out["divergence"] = {"labels": ["mean exchange divergence"],
                             "series": [[finite(st.exchange_divergence) for st in steps]]}
        out["status"] = run.status
        return out


def compare_data(sf: SessionFactory, run_ids: list[int]) -> dict[str, Any]:
    """Pareto trajectories of every (run, student) on one pair of axes per student position, the students
    the runs share with their accuracy change in each (``app.services.peer_compare``), and the key curves
    (loss, kept rate, break rate, gate delta) on a shared global-step axis."""
    with session_scope(sf) as s:
        runs = []
        for rid in run_ids:
            runs.append(run_or_404(s, rid))
        curves: dict[str, Any] = {}
        xs: set[int] = set()
        per_run: list[tuple[Run, dict[int, Step]]] = []
        summaries = []
        evals_by: dict[int, list[EvalResult]] = {}
        for run in runs:
            evals_by[run.id] = list(s.scalars(select(EvalResult).where(EvalResult.run_id == run.id)))
            steps = step_rows(s, run.id)
            per_run.append((run, {st.global_step: st for st in steps}))
            xs.update(st.global_step for st in steps)
            summaries.append(run_summary(run, evals_by[run.id]))
        x = sorted(xs)
        panels = _compare_pareto(runs, evals_by)

        def per_step(fn) -> list[list[float | None]]:
            return [[(fn(steps[g]) if g in steps else None) for g in x] for _run, steps in per_run]

        labels = [f"#{run.id} {run.name}" for run in runs]
        curves["loss"] = {"title": "loss", "labels": labels, "series": per_step(lambda st: finite(st.loss))}
        curves["kept_rate"] = {"title": "kept rate", "labels": labels,
                               "series": per_step(lambda st: finite((st.metrics or {}).get("anchoring/kept_rate")))}
        curves["break_rate"] = {"title": "break rate", "labels": labels,
                                "series": per_step(lambda st: finite((st.metrics or {}).get("break/rate")))}
        curves["delta"] = {"title": "gate delta of the tutor", "labels": labels,
                           "series": per_step(lambda st: finite((st.metrics or {}).get("gate/delta")))}
        curves["throughput"] = {"title": "rollout tokens/s", "labels": labels,
                                "series": per_step(lambda st: finite(
                                    (st.metrics or {}).get("throughput/rollout_tokens_per_s")))}
        return {"runs": summaries, "pareto_panels": panels, "peers": shared_students(runs, evals_by),
                "charts": {"x": x, "curves": curves}}


def _compare_pareto(runs: list[Run], evals_by: dict[int, list[EvalResult]]) -> list[dict[str, Any]]:
    """One panel per student position (as many as the largest run has students); a line per run that has
    a student at that position, with the run's own domains."""
    panels = []
    for pos in range(max((len(run.students) for run in runs), default=0)):
        series = []
        for i, run in enumerate(runs):
            if pos >= len(run.students):
                continue
            students = [{"name": st.name, "strong_domain": st.strong_domain} for st in run.students]
            doms = domains_of(run.config or {})
            st = pareto_series(evals_by[run.id], students, doms)[pos]
            series.append({**st, "domains": doms, "run_index": i, "label": f"#{run.id} {run.name}: {st['student']}"})
        panels.append({"title": f"student {pos + 1}", "series": series})
    return panels
