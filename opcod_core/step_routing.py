"""Who writes the feedback in one step among N peers, and how their feedback reaches the self-teacher.

With two students the tutor of a direction is the other one. With N (2 to 8) each question is routed
(``opcod_core.routing``, whose docstring has the selection rules). The rules of a step:

* Candidates. The cognizant peers of a question are the students p with
  ``gating.tutor_allowed(gate record of p this round, question's domain)``: Δ_p ≤ τ in mode
  ``cognizance``, with every human force/mute and domain restriction (``domain_selective``) included.
  The tutee is never its own tutor.
* Routing (``routing.mode``): ``best`` the candidate with the highest validation score s^p_d on the
  question's domain d (this round's gate scores; ties by ``routing.tie_key``, a seeded hash);
  ``round_robin`` candidate number i mod c, i = global_step·B + p the question's position in the run's
  prompt stream (B prompts per step, p its index in the batch), so consecutive questions rotate;
  ``all`` every candidate, best score first, at most ``routing.max_tutors``. A question (prompt) has one
  route; its n rollouts share it. With two peers every mode gives the one other peer when it is
  cognizant, else nobody: today's behaviour.
* Quarantine (``opcod_core.trust``): a quarantined tutor that the mode would have picked still writes
  its feedback (stored on the exchange, marked ``quarantined``, ``used`` None, and probed for breaks),
  but it never enters a teacher context; the mode picks among the others for the feedback that is used.
* Sampling. One sampling call per tutor over its rows (rows in batch order, tutors in the fixed peer
  order), with the run's tutor template and settings. Seed: ``derive_seed(seed, global_step, "tutor")``
  with two peers (the seed the step always used, so results are identical), and
  ``derive_seed(seed, global_step, "tutor-<name>")`` with more, so that tutors writing on the same
  question in mode ``all`` draw independent samples.
* Teacher context. f = the sanitised ``kept`` feedback of the routed tutors, in route order (best first),
  joined by a newline (each tutor's feedback on its own line under the one "peer tutor's feedback"
  header of ``opcod_core.prompts``); with one tutor it is that tutor's text. A tutor whose feedback is
  discarded by anchoring adds nothing.
* Benchmark fault (``opcod_core.faults``, never in a real run): from ``faults.poison.from_step`` on, the
  named tutor's sampled text is replaced by a wrong hint before anchoring classifies it, and its feedback
  record is marked ``poisoned``.
* Manual approval: one decision per rollout, on the joined f the teacher would see: reject drops it
  all, edit replaces it all (the first tutor's feedback becomes ``source: human``).
* Attribution. An exchange names its own tutor: the first routed tutor, else the first quarantined one
  that wrote, else the step's tutor. A step names the tutor whose feedback it used on most rollouts
  (ties: peer order), else its default: the next student after the tutee in the fixed order (with two
  peers: the other one, as always); its gate metrics are that tutor's.
"""

from __future__ import annotations

import time
from collections import Counter

from opcod_core.anchoring import classify_feedback, render_tutor_messages
from opcod_core.controls import ApprovalRequest
from opcod_core.gating import tutor_allowed
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import format_choices
from opcod_core.routing import route
from opcod_core.step import Row, StepContext, derive_seed, exchange_event, exchange_key


def default_tutor(names: list[str], tutee: str) -> str:
    """The student after ``tutee`` in the fixed order, cyclically (two students: the other one)."""
    return names[(names.index(tutee) + 1) % len(names)]


def route_rows(ctx: StepContext, rows: list[Row]) -> None:
    """Sets each row's ``route`` and ``tutor`` (module docstring)."""
    cfg, names, tutee = ctx.config, list(ctx.peers), ctx.tutee.name
    routes: dict[int, object] = {}
    for r in rows:
        if r.p not in routes:
            domain = r.item.domain
            cognizant = [p for p in names if ctx.gates.get(p) is not None and tutor_allowed(ctx.gates[p], domain)]
            routes[r.p] = route(names, tutee, domain, cognizant, ctx.scores, seed=cfg.seed, round=ctx.round,
                                index=ctx.global_step * len(ctx.items) + r.p, mode=cfg.routing.mode,
                                max_tutors=cfg.routing.max_tutors, quarantined=ctx.quarantined & set(names))
        r.route = routes[r.p]
        r.tutor = (r.route.tutors or r.route.quarantined or (ctx.tutor.name,))[0]


def tutor_feedback(ctx: StepContext, rows: list[Row]) -> float:
    """Routes the rows, has every routed (and shadow) tutor write on its rows, joins the used feedback;
    returns the time spent writing."""
    if ctx.config.context_mode == "s":
        return 0.0
    route_rows(ctx, rows)
    writers = {name: [r for r in rows if name in r.route.tutors or name in r.route.quarantined]
               for name in ctx.peers}
    writers = {name: targets for name, targets in writers.items() if targets}
    if not writers:
        return 0.0
    t0 = time.perf_counter()
    for name, targets in writers.items():
        _write(ctx, name, targets)
    for r in rows:
        r.feedback = r.feedbacks.get(r.tutor, {})
        texts = [r.feedbacks[t]["used"] for t in r.route.tutors if r.feedbacks[t]["used"]]
        r.feedback_text = "\n".join(texts) if texts else None
    _apply_manual_approval(ctx, [r for r in rows if r.feedback_text is not None])
    return time.perf_counter() - t0


def _write(ctx: StepContext, name: str, targets: list[Row]) -> None:
    """One sampling call: tutor ``name`` writes anchored feedback on ``targets``."""
    cfg, tutor = ctx.config, ctx.peers[name]
    prompts, prefill = [], ctx.template.prefill
    for r in targets:
        messages, prefill = render_tutor_messages(
            ctx.template, r.item.question, format_choices(list(r.item.labels), list(r.item.choices)), r.text,
            gold=r.item.gold if ctx.template.show_gold else None)
        prompts.append(tutor.render(messages, prefill=prefill))
    purpose = "tutor" if len(ctx.peers) <= 2 else f"tutor-{name}"
    params = SamplingParams(n=1, temperature=cfg.tutor.temperature, max_new_tokens=cfg.tutor.max_new_tokens,
                            stop=tuple(cfg.tutor.stop), seed=derive_seed(cfg.seed, ctx.global_step, purpose))
    outs = tutor.sample(prompts, params)
    poison = ctx.poison if ctx.poison is not None and ctx.poison.applies(name, ctx.global_step) else None
    for r, comps in zip(targets, outs, strict=True):
        raw = prefill + comps[0].text
        v = _classify(raw, r.item)
        bad = poison.feedback(r.item, ctx.global_step, v.concept) if poison is not None else None
        if bad is not None:        # a benchmark fault (opcod_core.faults): replaced before anchoring judges it
            raw, v = bad, _classify(bad, r.item)
        used = v.sanitised if name in r.route.tutors else None     # a quarantined tutor writes in the shadow
        r.feedbacks[name] = {"raw": raw, "concept": v.concept, "category": v.category, "sanitised": v.sanitised,
                             "redactions": [x.__dict__ for x in v.redactions], "used": used,
                             "source": "model", "approval": None, **({"poisoned": True} if bad is not None else {})}


def _classify(raw: str, item):
    return classify_feedback(raw, item.question, gold=item.gold, choices=list(item.choices), labels=list(item.labels))


def _apply_manual_approval(ctx: StepContext, rows: list[Row]) -> None:
    cfg = ctx.config
    if not rows or (cfg.tutor.approval != "manual" and ctx.gating_mode != "manual"):
        return
    pending = [ApprovalRequest(exchange_id=exchange_key(ctx, r), exchange=exchange_event(ctx, r, None, None))
               for r in rows]
    decisions = ctx.controls.decide(pending, cfg.tutor.approval_timeout_s, cfg.tutor.approval_default)
    for r, req in zip(rows, pending, strict=True):
        kind, text = decisions.get(req.exchange_id, (cfg.tutor.approval_default, None))
        used_by = [t for t in r.route.tutors if r.feedbacks[t]["used"]]
        for t in used_by:
            r.feedbacks[t]["approval"] = kind
        if kind == "reject":
            r.feedback_text = None
            for t in used_by:
                r.feedbacks[t]["used"] = None
        elif kind == "edit" and text:
            r.feedback_text = text
            for i, t in enumerate(used_by):
                r.feedbacks[t]["used"] = text if i == 0 else None
            r.feedbacks[used_by[0]]["source"] = "human"


def step_tutor(ctx: StepContext, rows: list[Row]) -> str:
    """The tutor a step names (module docstring, "Attribution")."""
    counts = Counter(t for r in rows if r.route is not None and r.feedback_text is not None
                     for t in r.route.tutors if r.feedbacks[t]["used"])
    if not counts:
        return ctx.tutor.name
    top = max(counts.values())
    return next(n for n in ctx.peers if counts.get(n) == top)


def step_tutors(ctx: StepContext, rows: list[Row]) -> list[str] | None:
    """Every tutor whose feedback the step used, in peer order (an N-peer field: None with two peers)."""
    if not ctx.peer_fields:
        return None
    used = {t for r in rows if r.route is not None for t in r.route.tutors if r.feedbacks.get(t, {}).get("used")}
    return [n for n in ctx.peers if n in used]
