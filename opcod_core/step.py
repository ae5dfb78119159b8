"""One OPCoD training step for a (tutee T, tutor U) pair: DESIGN section 2, "One step", 1-8.

1. the prompts of this step come from the trainer (a seeded stream over both domains' train splits);
2. T samples n rollouts per prompt; a rollout that ended with EOS keeps that token as its last scored
   position (``generation.base``; ``rollout.score_eos: false`` drops it here, so that every loss,
   the s-only divergence, stored exchanges and replays see the shorter rollout); ``text`` never
   holds EOS, so the tutor, the sibling s and answer checking read the same text either way;
3. each is verified against the gold answer;
4. for rollout k the correct sibling s is drawn uniformly from T's *other* correct rollouts of the
   same prompt with ``random.Random(f"{seed}-s-{global_step}-{prompt}-{k}")`` (None when there is
   none) — the paper leaves this choice open; s is the sibling's text without ``<think>`` blocks
   (``opcod_core.thinking``), and that is what the teacher context and the exchange show. In context
   mode ``f`` the teacher never sees s, so none is drawn: an exchange's ``s_index``/``s_text`` are
   always the s its teacher saw (None when it saw none), never a sibling that was chosen and then left out;
5. each prompt is routed to its tutor(s) among the cognizant peers (``opcod_core.step_routing``: with
   two peers, U when it is gated in and the mode allows the prompt's domain), which write anchored
   feedback on each of its rollouts; only ``kept`` feedback is used, sanitised (in manual approval mode a
   human decides: ``tutor.approval: manual`` or the *live* gating mode ``manual``, which a run-level
   override can switch at any step, carried here as ``StepContext.gating_mode``);
6. the self-teacher context is (question, s, f) for T's own weights; 7. the loss is the per-token
   divergence over y's tokens, averaged over tokens then over the rollouts that have a teacher
   context (rollouts with neither s nor f have teacher = student: skipped and counted);
8. one optimizer step on T (``StudentRuntime.distill_step``).

Also computed here, before the update so that every number describes the same weights: the
divergence with s only (the feedback-effect heatmap) and the break-rate sample.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opcod_core.data.answers import is_correct
from opcod_core.data.types import Item
from opcod_core.events import ExchangeEvent
from opcod_core.gating import GateRecord
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import rollout_messages, teacher_context
from opcod_core.routing import Route
from opcod_core.student_types import DistillExample
from opcod_core.thinking import strip_think

if TYPE_CHECKING:
    from opcod_core.anchoring import TutorTemplate
    from opcod_core.config import RunConfig
    from opcod_core.controls import Controls
    from opcod_core.faults import Poisoner
    from opcod_core.student import StudentRuntime


def derive_seed(seed: int, global_step: int, purpose: str) -> int:
    """A sampling seed that is a pure function of its position: what makes resume exact."""
    return random.Random(f"{seed}-{global_step}-{purpose}").randrange(2**31)


@dataclass
class StepContext:
    config: RunConfig
    round: int
    direction: int
    step: int                 # index within the direction, 0-based
    global_step: int
    tutee: StudentRuntime     # or a Ray proxy with its methods (opcod_core.executors.ray)
    tutor: StudentRuntime
    tutor_gate: GateRecord | None
    items: list[Item]
    controls: Controls
    template: TutorTemplate
    gating_mode: str          # the live gating mode (a run-level override may have changed the config's)
    # N peers (opcod_core.step_routing): every student by name in the fixed order, this round's gate records
    # and validation scores, the tutors in quarantine
    peers: dict = field(default_factory=dict)
    gates: dict[str, GateRecord | None] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    quarantined: frozenset[str] = frozenset()
    poison: Poisoner | None = None     # a benchmark fault (opcod_core.faults); None in every real run

    @property
    def position(self) -> dict:
        """Where the step is; ``tutor`` is the step's tutor (with two peers: the other one)."""
        return {"round": self.round, "direction": self.direction, "step": self.step,
                "global_step": self.global_step, "tutee": self.tutee.name, "tutor": self.tutor.name}

    @property
    def peer_fields(self) -> bool:
        """Whether events carry the N-peer fields (``opcod_core.events.PEER_FIELDS``): more than two peers."""
        return len(self.peers) > 2


@dataclass
class Row:
    """One rollout and everything decided about it."""

    item: Item
    p: int
    k: int
    prompt_ids: list[int]
    token_ids: list[int]          # the scored tokens: the ending EOS included when rollout.score_eos
    text: str                     # never holds EOS
    answer: str | None
    correct: bool
    finish_reason: str = "length"  # eos | stop | length (generation.base.Completion)
    s_index: int | None = None
    s_text: str | None = None
    feedback: dict = field(default_factory=dict)      # the feedback of ``tutor`` (the exchange's tutor)
    used: str = "none"
    route: Route | None = None                        # who tutors this rollout's question (step_routing)
    tutor: str | None = None                          # the exchange's tutor; None: the step's
    feedbacks: dict[str, dict] = field(default_factory=dict)   # every tutor that wrote -> its feedback
    feedback_text: str | None = None                  # what the teacher context gets as f (step_routing)
    example: DistillExample | None = None
    s_only_div: list[float] | None = None

    @property
    def key(self) -> str:
        return f"p{self.p}-y{self.k}"


def sample_rollouts(ctx: StepContext) -> tuple[list[Row], float, int]:
    cfg = ctx.config
    t0 = time.perf_counter()
    prompts = [ctx.tutee.render(rollout_messages(it.question, list(it.labels), list(it.choices), it.answer_type))
               for it in ctx.items]
    params = SamplingParams(n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                            max_new_tokens=cfg.rollout.max_new_tokens, stop=tuple(cfg.rollout.stop),
                            seed=derive_seed(cfg.seed, ctx.global_step, "rollout"))
    outs = ctx.tutee.sample(prompts, params)
    rows: list[Row] = []
    n_tokens = 0   # generated tokens (an ending EOS is generated, scored or not): throughput
    for p, (item, prompt, comps) in enumerate(zip(ctx.items, prompts, outs, strict=True)):
        for k, c in enumerate(comps):
            answer, correct = is_correct(item, c.text)
            rows.append(Row(item, p, k, prompt, scored_tokens(c, cfg.rollout.score_eos), c.text, answer,
                            bool(correct), c.finish_reason))
            n_tokens += len(c.token_ids)
    return rows, time.perf_counter() - t0, n_tokens


def scored_tokens(c, score_eos: bool) -> list[int]:
    """The tokens of completion ``c`` that the losses score: all of them, or without the ending EOS
    when ``score_eos`` is off (the behaviour before EOS was scored)."""
    ids = list(c.token_ids)
    return ids[:-1] if c.finish_reason == "eos" and not score_eos else ids


def choose_siblings(ctx: StepContext, rows: list[Row]) -> None:
    if ctx.config.context_mode == "f":   # the teacher never sees s: choose none (module docstring, 4)
        return
    by_prompt: dict[int, list[Row]] = {}
    for r in rows:
        by_prompt.setdefault(r.p, []).append(r)
    for group in by_prompt.values():
        for r in group:
            others = [o for o in group if o.k != r.k and o.correct]
            if others:
                pick = random.Random(f"{ctx.config.seed}-s-{ctx.global_step}-{r.p}-{r.k}").choice(others)
                r.s_index, r.s_text = pick.k, strip_think(pick.text)  # s is the answer, not the reasoning


def build_examples(ctx: StepContext, rows: list[Row]) -> None:
    mode = ctx.config.context_mode
    for r in rows:
        it = r.item
        tc = teacher_context(mode, it.question, list(it.labels), list(it.choices), it.answer_type,
                             r.s_text, r.feedback_text)
        r.used = tc.used
        if tc.solution is None:      # an exchange shows only the s its teacher saw
            r.s_index = r.s_text = None
        teacher_prefix = ctx.tutee.render(tc.messages) if tc.used != "none" else None
        s_only = None
        if tc.used == "s+f":
            s_only = ctx.tutee.render(teacher_context(mode, it.question, list(it.labels), list(it.choices),
                                                      it.answer_type, r.s_text, None).messages)
        r.example = DistillExample(r.prompt_ids, r.token_ids, teacher_prefix, s_only)


def s_only_divergence(ctx: StepContext, rows: list[Row]) -> None:
    """Divergence with s only, for the feedback-effect heatmap (with s+f minus with s only)."""
    with_s = [r for r in rows if r.used == "s+f"]
    if with_s:
        divs = ctx.tutee.divergence_between([r.example.student_prefix for r in with_s],
                                            [r.example.s_only_prefix for r in with_s],
                                            [r.token_ids for r in with_s], ctx.config.loss)
        for r, d in zip(with_s, divs, strict=True):
            r.s_only_div = d


def exchange_key(ctx: StepContext, r: Row) -> str:
    return f"r{ctx.round}-d{ctx.direction}-s{ctx.step}-{r.key}"


def exchange_event(ctx: StepContext, r: Row, result, teacher_context: str | None) -> ExchangeEvent:
    """The exchange as the headless contract and the database store it."""
    fb = r.feedback
    it = r.item
    n = len(r.token_ids)
    divergence = result.divergence if result else [0.0] * n
    if r.used == "s+f":
        div_s = r.s_only_div
    elif r.used == "s":
        div_s = divergence
    else:
        div_s = [0.0] * n
    return ExchangeEvent(
        key=exchange_key(ctx, r), **{**ctx.position, "tutor": r.tutor or ctx.tutor.name},
        domain=it.domain, prompt_id=it.id, question=it.question,
        choices=list(it.choices), labels=list(it.labels), gold=it.gold,
        prompt_index=r.p, rollout_index=r.k,
        rollout_text=r.text, token_ids=r.token_ids, finish_reason=r.finish_reason,
        answer=r.answer, correct=r.correct,
        s_index=r.s_index, s_text=r.s_text,
        feedback_raw=fb.get("raw"), concept=fb.get("concept"), category=fb.get("category"),
        feedback_sanitised=fb.get("sanitised"), redactions=fb.get("redactions", []),
        feedback_used=r.feedback_text if r.used in ("s+f", "f") else None,
        feedback_source=fb.get("source"), approval=fb.get("approval"),
        context_used=r.used, skipped=r.used == "none", teacher_context=teacher_context,
        tokens=ctx.tutee.token_strings(r.token_ids), divergence=divergence,
        divergence_s_only=div_s, student_logprob=result.student_logprob if result else None,
        loss=result.loss if result else 0.0, **peer_fields(ctx, r),
    )


def peer_fields(ctx: StepContext, r: Row) -> dict:
    """The exchange's N-peer fields (``events.PEER_FIELDS``): written with more than two peers, when a
    quarantined tutor wrote on this rollout, or when a feedback was poisoned (``opcod_core.faults``); else
    none (a two-peer exchange as it always was)."""
    route = r.route
    poisoned = any(fb.get("poisoned") for fb in r.feedbacks.values())
    if route is None or not (ctx.peer_fields or route.quarantined or poisoned):
        return {}
    return {"tutors": list(route.tutors), "quarantined": list(route.quarantined), "route_reason": route.reason,
            "feedbacks": [{"tutor": t, "quarantined": t in route.quarantined, **r.feedbacks[t]}
                          for t in route.tutors + route.quarantined if t in r.feedbacks]}
