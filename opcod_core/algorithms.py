"""The three training algorithms as small strategies of one step: given the step's context and its sampled
rollouts, build what the update needs and run it (``Trainer.task_step`` does the rest: sampling before,
the exchange, break and step events after).

* ``opcod``: sibling s, the tutor's anchored feedback f, the self-teacher examples (s+f), the s-only
  divergence and the break-rate probes, then the distillation step (with any human-written examples);
* ``one_way``: the frozen peer as teacher on the student context (``baselines.one_way_examples``), then
  the same distillation step, teacher = the tutor;
* ``grpo``: group-relative advantages and a policy-gradient step (no teacher).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from opcod_core import baselines, breakrate
from opcod_core.events import BreakEvent, ExchangeEvent
from opcod_core.human_feedback import human_examples
from opcod_core.step import StepContext, build_examples, choose_siblings, exchange_key, s_only_divergence
from opcod_core.step_routing import tutor_feedback
from opcod_core.student_types import DistillExample



class Trainer(Protocol):
    """What a strategy reads of the trainer (``opcod_core.trainer.Trainer`` has it)."""

    pending_human: dict[str, list]        # human-written feedback waiting for each tutee's next step
    items_by_id: dict

    def _one_way_domain(self, tutor_name: str) -> str | None: ...


@dataclass
class Update:
    """What a step's update produced, and the time spent writing feedback and training."""

    out: object                                   # StepOutput
    human: list[tuple[ExchangeEvent, DistillExample]] = field(default_factory=list)
    breaks: list[BreakEvent] = field(default_factory=list)
    t_feedback: float = 0.0
    t_train: float = 0.0


def _distill(trainer: Trainer, ctx: StepContext, rows: list, teacher=None, **kw) -> Update:
    """The distillation step on the rows' examples plus the human-written examples waiting for the tutee."""
    name = ctx.tutee.name
    pending, trainer.pending_human[name] = trainer.pending_human.get(name, []), []
    human = human_examples(ctx, pending, trainer.items_by_id)
    t1 = time.perf_counter()
    out = ctx.tutee.distill_step([r.example for r in rows] + [e for _, e in human], ctx.config.loss, teacher=teacher)
    return Update(out, human, t_train=time.perf_counter() - t1, **kw)


def opcod_update(trainer: Trainer, ctx: StepContext, rows: list) -> Update:
    choose_siblings(ctx, rows)
    t_feedback = tutor_feedback(ctx, rows)
    build_examples(ctx, rows)
    s_only_divergence(ctx, rows)
    breaks = breakrate.break_samples(ctx, rows, lambda row: exchange_key(ctx, row))
    return _distill(trainer, ctx, rows, breaks=breaks, t_feedback=t_feedback)


def one_way_update(trainer: Trainer, ctx: StepContext, rows: list) -> Update:
    baselines.one_way_examples(rows, trainer._one_way_domain(ctx.tutor.name))
    return _distill(trainer, ctx, rows, teacher=ctx.tutor)


def grpo_update(trainer: Trainer, ctx: StepContext, rows: list) -> Update:
    advantages = baselines.grpo_advantages(rows)
    t1 = time.perf_counter()
    out = ctx.tutee.policy_gradient_step([r.prompt_ids for r in rows], [r.token_ids for r in rows], advantages,
                                         ctx.config.loss)
    return Update(out, t_train=time.perf_counter() - t1)


ALGORITHMS: dict[str, Callable[[Trainer, StepContext, list], Update]] = {
    "opcod": opcod_update, "one_way": one_way_update, "grpo": grpo_update}
