"""The per-step metrics a training step reports (the ``metrics`` of its ``step`` event).

Why a module: the names are a contract read by the run page's charts, ``opcod bench drift`` and the
export, so they are written once. Rates are over the step's rollouts: ``rollout/finish_{eos,stop,length}``
(how each rollout ended), ``rollout/parse_failure`` (no answer extracted), ``rollout/mean_length``
(scored tokens, EOS included when scored); anchoring counts per category; ``context/{s+f,s,f,none}``
counts; the tutor's gate; phase times; the student's update metrics (``train/*``); and the break rate
of this step's samples (``break/*``, absent when nothing was eligible).
"""

from __future__ import annotations

from opcod_core import breakrate
from opcod_core.events import BreakEvent
from opcod_core.step import Row, StepContext


def step_metrics(ctx: StepContext, rows: list[Row], out, breaks: list[BreakEvent], t_rollout: float, t_feedback: float,
                 t_train: float, t_step: float, n_tokens: int) -> dict[str, float]:
    cats: dict[str, int] = {}
    for r in rows:
        for fb in r.feedbacks.values() or [r.feedback]:   # every tutor's feedback (N peers: several)
            c = fb.get("category")
            if c:
                cats[c] = cats.get(c, 0) + 1
    n_fb = sum(cats.values())
    used: dict[str, int] = {}
    for r in rows:
        used[r.used] = used.get(r.used, 0) + 1
    gate = ctx.tutor_gate
    n_rows = max(len(rows), 1)
    return {"loss/" + ctx.config.loss.divergence: out.loss,
            "rollout/accuracy": sum(r.correct for r in rows) / n_rows,
            "rollout/tokens": float(n_tokens),
            **{f"rollout/finish_{f}": sum(r.finish_reason == f for r in rows) / n_rows
               for f in ("eos", "stop", "length")},
            "rollout/parse_failure": sum(r.answer is None for r in rows) / n_rows,
            "rollout/mean_length": sum(len(r.token_ids) for r in rows) / n_rows,
            "anchoring/feedback": float(n_fb),
            "anchoring/kept_rate": (cats.get("kept", 0) / n_fb) if n_fb else 0.0,
            **{f"anchoring/{c}": float(v) for c, v in cats.items()},
            **{f"context/{u}": float(v) for u, v in used.items()},
            "gate/tutor_on": 1.0 if gate is not None and gate.decision == "tutor" else 0.0,
            "gate/delta": gate.delta if gate is not None else 0.0,
            "time/rollout": t_rollout, "time/feedback": t_feedback, "time/train": t_train, "time/step": t_step,
            "throughput/rollout_tokens_per_s": n_tokens / t_rollout if t_rollout > 0 else 0.0,
            **out.metrics,
            **breakrate.step_metrics(breaks)}
