"""The trainer's events: one typed schema for every sink.

Why: the same facts about a run go to ``events.jsonl`` (the headless contract of ``opcod train --out``),
to the web worker's recorder (database rows), back into the trainer (an exchange a person edits or
replays is the stored exchange event), to the export and to the pages. Each event type is one frozen
pydantic model here, so a field is named once, validated where the event is made, and read by
attribute everywhere else. ``to_dict()`` is the JSON object a line of ``events.jsonl`` holds (every
field, ``type`` first); ``parse_event`` reads one back.

Types: ``run_start``, ``resume``, ``gate``, ``exchange``, ``step``, ``eval``, ``break``, ``trust``,
``checkpoint``, ``override``, ``replay``, ``finish``. Step-level events carry the trainer's position
(``Position``: round, direction, step within the direction, global step, tutee and tutor names).

Fields added for N peers (``PEER_FIELDS``: an exchange's tutors, quarantined tutors and every tutor's
feedback, a step's tutors, a probe made on quarantined feedback) default to None and are left out of
``to_dict()`` while None: the trainer sets them when the run has more than two peers, a quarantine
touches the event or a benchmark fault poisoned one of its feedbacks (``opcod_core.faults``: that record
says ``"poisoned": true``), so a two-peer run without quarantine writes exactly the lines it wrote before they
existed (``parse_event`` reads a line without them back as None).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from opcod_core.gating import GateRecord


#: Fields written only when set (module docstring).
PEER_FIELDS: frozenset[str] = frozenset({"tutors", "quarantined", "feedbacks", "route_reason", "shadow"})


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    _optional: ClassVar[frozenset[str]] = PEER_FIELDS

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this event, ``type`` first (floats as they are: NaN stays NaN, as ``json.dumps``
        writes it; tuples as lists); a ``PEER_FIELDS`` field only when it is not None."""
        unset = {f for f in self._optional if f in type(self).model_fields and getattr(self, f) is None}
        return json_ready({"type": getattr(self, "type"), **self.model_dump(exclude=unset or None)})


def json_ready(value: Any) -> Any:
    """Tuples as lists, recursively (what ``json.loads`` gives back for them)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class Position(_Event):
    """Where in the schedule a step-level event happened (``opcod_core.step.StepContext.position``)."""

    round: int
    direction: int
    step: int
    global_step: int
    tutee: str
    tutor: str


class RunStartEvent(_Event):
    type: Literal["run_start"] = "run_start"
    config: dict[str, Any]
    students: list[str]
    domains: list[str]
    tasks: int
    steps: int


class ResumeEvent(_Event):
    type: Literal["resume"] = "resume"
    next_task: int


class GateEvent(_Event, GateRecord):
    """One student's gate decision of a round (``opcod_core.gating.GateRecord``: the scores, Δ, τ, the
    decision and why) and how it was measured (split, k samples per question, questions per domain)."""

    type: Literal["gate"] = "gate"
    split: str = "validation"
    k: int | None = None
    n_items: dict[str, Any] | None = None
    note: str | None = None


class ExchangeEvent(Position):
    """One tutoring exchange: the tutee's rollout y, the sibling s, the tutor's feedback f (raw, anchoring
    verdict, what the teacher context used), and the per-token divergence the update trained on.

    The same model is the stored exchange a person edits or replays (``app.worker.controls``); the fields
    a stored row does not keep (the tutor's raw text, redactions) are then None. An exchange made from a
    human edit names its origin (``origin_key``) and the override (``override_id``)."""

    type: Literal["exchange"] = "exchange"
    key: str
    domain: str
    prompt_id: str
    question: str
    choices: list[str] = []
    labels: list[str] = []
    gold: str
    prompt_index: int | None = None
    rollout_index: int | None = None
    rollout_text: str
    token_ids: list[int]
    finish_reason: str | None = None
    answer: str | None = None
    correct: bool
    s_index: int | None = None
    s_text: str | None = None
    feedback_raw: str | None = None
    concept: str | None = None
    category: str | None = None
    feedback_sanitised: str | None = None
    redactions: list[dict[str, Any]] = []
    feedback_used: str | None = None
    feedback_source: Literal["model", "human"] | None = None
    approval: str | None = None
    context_used: str = "none"
    skipped: bool = False
    teacher_context: str | None = None
    tokens: list[str] | None = None
    divergence: list[float] | None = None
    divergence_s_only: list[float] | None = None
    student_logprob: list[float] | None = None
    loss: float | None = None
    origin_key: str | None = None
    override_id: str | None = None
    # N peers (PEER_FIELDS): the tutors whose feedback the teacher context used, best first; the quarantined
    # ones that wrote in the shadow; one record per tutor that wrote (``opcod_core.peers.feedback_record``);
    # why the question went to them (``opcod_core.routing.Route.reason``)
    tutors: list[str] | None = None
    quarantined: list[str] | None = None
    feedbacks: list[dict[str, Any]] | None = None
    route_reason: str | None = None

    @property
    def answer_type(self) -> Literal["mcq", "numeric"]:
        return "mcq" if self.labels else "numeric"

    @property
    def human(self) -> bool:
        return self.feedback_source == "human"


class StepEvent(Position):
    type: Literal["step"] = "step"
    loss: float
    metrics: dict[str, Any]
    tutors: list[str] | None = None     # N peers: every tutor whose feedback this step used (peer order)


class EvalEvent(_Event):
    type: Literal["eval"] = "eval"
    round: int
    student: str
    split: str = "test"
    domain: str
    k: int
    accuracy: float
    n_items: int = 0


class BreakEvent(Position):
    """One break-rate probe (``opcod_core.breakrate``): the tutee answering greedily with and without f."""

    type: Literal["break"] = "break"
    exchange_key: str
    domain: str
    tutor_cognizant: bool
    difficulty: str
    context: str | None = None
    baseline: str | None = None
    correct_with_f: bool
    correct_without_f: bool
    eligible: bool
    broken: bool
    shadow: bool | None = None          # the probed feedback is a quarantined tutor's (never used in training)


class TrustEvent(_Event):
    """A tutor quarantined or lifted (``opcod_core.trust.TrustChange``): automatically, from the break probes
    (``source: auto``), or by a person's run-level override (``source: human``, ``override_id``). ``step`` is
    the global step from which the change holds."""

    type: Literal["trust"] = "trust"
    tutor: str
    action: Literal["quarantine", "lift"]
    source: Literal["auto", "human"]
    step: int
    round: int
    reason: str
    domain: str | None = None
    override_id: str | None = None


class CheckpointEvent(_Event):
    type: Literal["checkpoint"] = "checkpoint"
    tag: str
    path: str
    next_task: int
    after: list[Any]
    events_before: int
    permanent: bool = False


class OverrideEvent(_Event):
    """A human override the trainer applied, at ``applied_at_step``: run-level (``student``, ``value``)
    or exchange-level (``exchange_key``, ``text``, ``tutee``)."""

    type: Literal["override"] = "override"
    id: str
    kind: str
    author: str = "human"
    applied_at_step: int
    round: int
    student: str | None = None
    value: Any = None
    exchange_key: str | None = None
    text: str | None = None
    tutee: str | None = None


class ReplayEvent(_Event):
    type: Literal["replay"] = "replay"
    id: str
    exchange_key: str | None = None
    status: Literal["done", "failed"]
    result: dict[str, Any] | None = None
    error: str | None = None


class FinishEvent(_Event):
    type: Literal["finish"] = "finish"
    status: Literal["finished", "paused", "cancelled"]
    summary: dict[str, Any] | None = None


Event = Annotated[Union[RunStartEvent, ResumeEvent, GateEvent, ExchangeEvent, StepEvent, EvalEvent, BreakEvent,
                        TrustEvent, CheckpointEvent, OverrideEvent, ReplayEvent, FinishEvent],
                  Field(discriminator="type")]
EVENT_TYPES: dict[str, type[_Event]] = {
    m.model_fields["type"].default: m
    for m in (RunStartEvent, ResumeEvent, GateEvent, ExchangeEvent, StepEvent, EvalEvent, BreakEvent, TrustEvent,
              CheckpointEvent, OverrideEvent, ReplayEvent, FinishEvent)}
_ADAPTER: TypeAdapter = TypeAdapter(Event)


def parse_event(data: dict[str, Any]) -> Event:
    """A typed event from its JSON object (a line of ``events.jsonl``); a ``ValidationError`` names the
    field that does not fit."""
    return _ADAPTER.validate_python(data)
