"""Request and response models of the REST API (``/api/v1``); they are the OpenAPI schema at ``/docs``.

Requests forbid unknown fields (a typo is a 422 naming the field, never silently ignored). Responses
are built from ORM rows (``from_attributes``). Run configs are not modelled twice: a run-create body is
either a full ``opcod_core.config.RunConfig`` or ``{"preset", "overrides"}``, validated by the core's
own model so the field paths and ranges are the core's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator, model_validator

from opcod_core.config import RunConfig
from opcod_core.vocabulary import ApprovalStatus, ExchangeOverrideKind, OverrideStatus, ReplayStatus, RunOverrideKind
from opcod_core.vocabulary import RunStatus as RunStatusEnum
from opcod_core.vocabulary import MAX_REASON, values

RunStatus = Literal[values(RunStatusEnum)]  # type: ignore[valid-type]

MAX_TEXT = 20_000
AUTHOR = Field("api", min_length=1, max_length=200, description="Who asked (stored in the audit record).")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """No NUL characters anywhere (PostgreSQL text cannot hold them)."""
        _check_nul(data)
        return data


def _check_nul(value: Any) -> None:
    """Iterative (no input can exhaust the stack): NUL characters and nesting deeper than 32 levels."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > 32:
            raise ValueError("nested deeper than 32 levels")
        if isinstance(v, str):
            if "\x00" in v:
                raise ValueError("text may not contain NUL characters")
        elif isinstance(v, dict):
            stack.extend((x, depth + 1) for x in (*v.keys(), *v.values()))
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- runs --------------------------------------------------------------------------------------------

class RunCreateFromPreset(_Request):
    """One of the two shapes of ``POST /runs`` (the other is a full run config, ``RunConfig``)."""

    preset: str = Field(description="Preset name (see GET /presets).", examples=["tiny"])
    overrides: dict[str, Any] = Field(default_factory=dict, description="Nested overrides of the preset's "
                                      "config, e.g. {\"schedule\": {\"rounds\": 1}}.")
    name: str | None = Field(None, min_length=1, max_length=120, description="Run name (default: the preset's).")


def run_create_kind(body: Any) -> str:
    """Which shape a ``POST /runs`` body has: a preset with overrides, or a full run config."""
    if isinstance(body, dict):
        return "preset" if "preset" in body and "students" not in body else "config"
    return "preset" if isinstance(body, RunCreateFromPreset) else "config"


#: The body of ``POST /runs``: a preset with overrides, or a full run config (``opcod_core.config.RunConfig``).
#: ``app.services.runs.config_from_body`` validates it (errors name config paths); its OpenAPI document is
#: generated from these models (``RUN_CREATE_OPENAPI``, with the schemas it references in
#: ``RUN_CREATE_COMPONENTS``, added to the app's components by ``app.main``).
RunCreate = Annotated[Union[Annotated[RunCreateFromPreset, Tag("preset")], Annotated[RunConfig, Tag("config")]],
                      Discriminator(run_create_kind)]
_RUN_CREATE_SCHEMA = TypeAdapter(RunCreate).json_schema(ref_template="#/components/schemas/{model}")
RUN_CREATE_COMPONENTS: dict[str, Any] = _RUN_CREATE_SCHEMA.pop("$defs", {})
RUN_CREATE_OPENAPI = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _RUN_CREATE_SCHEMA,
    "examples": {"preset": {"value": {"preset": "tiny", "overrides": {"schedule": {"rounds": 1}}}}}}}}}


class StudentOut(_Out):
    position: int
    name: str
    model_ref: str
    strong_domain: str | None
    tokenizer: str | None


class GateOut(_Out):
    id: int
    round: int
    student: str
    scores: dict[str, Any]
    best: dict[str, Any]
    delta: float
    tau: float
    mode: str
    decision: str
    source: str
    allowed_domains: list[Any] | None
    reason: str
    split: str | None
    k: int | None
    note: str | None
    delta_se: float | None = Field(None, description="Standard error of delta: paired bootstrap over the "
                                   "validation questions (opcod_core.gating); null when undefined (< 2 questions).")
    score_se: dict[str, Any] | None = Field(None, description="Standard error of each domain score (mean over "
                                            "questions).")
    n_items: dict[str, Any] | None = Field(None, description="Validation questions per domain behind the scores.")
    created_at: datetime


class BreakCounts(BaseModel):
    samples: int = Field(description="Break-rate probes (correct rollouts whose teacher used kept feedback).")
    eligible: int = Field(description="Denominator: probes whose self-teacher was right without the feedback.")
    broken: int = Field(description="Numerator: eligible probes the feedback turned wrong.")
    rate: float | None = Field(description="broken / eligible = P(wrong with f | right without f); null when "
                               "no probe is eligible.")


class BreakRateOut(BreakCounts):
    by_cognizance: dict[str, BreakCounts] = Field(default_factory=dict, description="Per tutor cognizance "
                                                  "(cognizant: the tutor's delta <= tau that round).")


class Progress(BaseModel):
    round: int | None = None
    direction: int | None = None
    step: int | None = None
    global_step: int | None = None
    tasks_done: int = 0
    tasks_total: int | None = None
    fraction: float = Field(0.0, description="tasks_done / tasks_total (0..1).")
    extra: dict[str, Any] = Field(default_factory=dict, description="Anything else the worker reported.")


class RunOut(_Out):
    id: int
    name: str
    preset: str | None
    status: RunStatus
    requested_action: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    worker_id: int | None
    heartbeat_at: datetime | None
    error: str | None
    parent_run_id: int | None
    fork_checkpoint: str | None
    takeovers: int = Field(0, description="Times a worker took this run over from a worker that died holding it.")
    progress: Progress


class RunDetail(RunOut):
    config: dict[str, Any]
    out_dir: str | None
    summary: dict[str, Any] | None
    students: list[StudentOut]
    gates: list[GateOut]
    break_rate: BreakRateOut = Field(description="Break rate over the whole run: counts summed over steps.")
    latest_metrics: dict[str, float] = Field(description="The newest value of every metric key.")
    latest_step: int | None = Field(None, description="Global step of the newest step row.")
    counts: dict[str, int] = Field(default_factory=dict, description="Exchanges, steps, pending overrides, "
                                   "pending approvals.")


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class ForkRequest(_Request):
    checkpoint_id: int | None = Field(None, ge=1, le=2**31 - 1, description="A checkpoint of the parent run (GET "
                                      "/runs/{id}/checkpoints); default: its latest.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Config overrides for the fork "
                                      "(students cannot change).")
    name: str | None = Field(None, min_length=1, max_length=120)


class CheckpointOut(_Out):
    id: int
    tag: str
    path: str
    next_task: int
    round: int | None
    permanent: bool
    pruned: bool = Field(False, description="Its files were deleted by the retention policy: it cannot be forked "
                                            "from or replayed with (409).")
    created_at: datetime


# --- exchanges ---------------------------------------------------------------------------------------

class ExchangeItem(_Out):
    id: int
    run_id: int
    key: str
    round: int
    direction: int
    global_step: int
    tutee: str
    tutor: str
    domain: str
    correct: bool
    category: str | None
    human_edited: bool
    origin_exchange_id: int | None
    override_id: int | None
    context_used: str
    skipped: bool
    finish_reason: str | None = Field(
        description="How the rollout ended: 'eos' (the model stopped; the EOS is its last token and is "
                    "scored), 'stop' (a stop string), 'length' (cut at the token limit); null for "
                    "exchanges stored before this was recorded.")
    loss: float | None
    created_at: datetime


class ExchangePage(BaseModel):
    items: list[ExchangeItem]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end.")


class PromptOut(_Out):
    id: int
    item_key: str
    domain: str
    split: str | None
    answer_type: str
    question: str
    choices: list[Any]
    labels: list[Any]
    gold: str


class RolloutOut(_Out):
    id: int
    student: str
    prompt_index: int | None
    rollout_index: int | None
    text: str
    token_ids: list[int]
    answer: str | None
    correct: bool


class FeedbackOut(_Out):
    id: int
    tutor: str
    raw: str | None
    concept: str | None
    category: str | None
    sanitised: str | None
    redactions: list[Any]
    used_text: str | None
    source: str
    approval: str | None
    shadow: bool = Field(False, description="Written by a quarantined tutor: stored and probed, never used.")
    poisoned: bool = Field(False, description="Replaced by a benchmark fault (faults.poison).")


class OverrideOut(_Out):
    id: int
    run_id: int
    exchange_id: int | None = Field(description="None for a run-level override, or while its exchange is being "
                                    "redone after a resume (then exchange_key names it).")
    exchange_key: str | None = None
    kind: str
    payload: dict[str, Any]
    author: str
    status: Literal[values(OverrideStatus)]  # type: ignore[valid-type]
    created_at: datetime
    applied_at: datetime | None
    applied_at_step: int | None


class ReplayOut(_Out):
    id: int
    run_id: int
    exchange_id: int | None = Field(description="None while the exchange is being redone after a resume.")
    exchange_key: str | None = None
    inputs: dict[str, Any]
    status: Literal[values(ReplayStatus)]  # type: ignore[valid-type]
    result: dict[str, Any] | None
    error: str | None
    worker_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ExchangeDetail(ExchangeItem):
    step_id: int
    s_index: int | None
    s_text: str | None
    teacher_context: str | None
    tokens: list[Any] | None
    student_logprob: list[float] | None
    divergence: list[float] | None
    divergence_s_only: list[float] | None
    prompt: PromptOut
    rollout: RolloutOut
    feedback: FeedbackOut | None
    feedbacks: list[FeedbackOut] = Field(default_factory=list, description="Every tutor's feedback on the rollout, "
                                         "the primary one first; a quarantined tutor's is marked shadow (never used).")
    tutors: list[str] | None = Field(None, description="N peers (else null): the tutors whose f was used, best first.")
    quarantined: list[str] | None = Field(None, description="N peers: quarantined tutors that wrote in the shadow.")
    route_reason: str | None = Field(None, description="N peers: why the question went to these tutors.")
    feedback_used: str | None = Field(None, description="The f the teacher saw: the used parts, in route order.")
    gate: GateOut | None = Field(description="The newest gate record of the tutor for this round.")
    overrides: list[OverrideOut] = Field(description="Exchange-level overrides of this exchange (audit).")
    provenance: OverrideOut | None = Field(None, description="For a human-edited exchange: the override that made it.")
    derived_exchange_ids: list[int] = Field(description="Human-edited exchanges made from this one.")
    replays: list[ReplayOut]


# --- overrides, approvals, replays -------------------------------------------------------------------

class ExchangeOverrideIn(_Request):
    kind: Literal[values(ExchangeOverrideKind)]  # type: ignore[valid-type]
    text: str | None = Field(None, max_length=MAX_TEXT, description="The edited feedback (required for 'edit').")
    author: str = AUTHOR


class RunOverrideIn(_Request):
    kind: Literal[values(RunOverrideKind)]  # type: ignore[valid-type]
    student: str | None = Field(None, max_length=100, description="force_tutor / mute_tutor / clear_tutor / "
                                "quarantine / lift: a student name of the run (the tutor).")
    value: float | str | None = Field(None, description="set_tau: a number; set_mode: a gating mode; quarantine / "
                                      f"lift: an optional reason (text, at most {MAX_REASON} characters).")
    author: str = AUTHOR


class ApprovalOut(_Out):
    id: int
    run_id: int
    exchange_key: str
    payload: dict[str, Any]
    status: Literal[values(ApprovalStatus)]  # type: ignore[valid-type]
    text: str | None
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None
    deadline: datetime | None


class ApprovalDecisionIn(_Request):
    decision: Literal["approve", "reject", "edit"]
    text: str | None = Field(None, max_length=MAX_TEXT, description="The edited feedback (required for 'edit').")
    author: str = AUTHOR


class ReplayIn(_Request):
    feedback_text: str | None = Field(None, max_length=MAX_TEXT, description="Edited feedback to replay with "
                                      "(null: the teacher without feedback, unless tutor_checkpoint is set).")
    feedback: str | None = Field(None, max_length=MAX_TEXT, description="Alias of feedback_text.")
    tutor_checkpoint: int | str | None = Field(None, description="A checkpoint of the run (id or tag) whose "
                                               "tutor writes fresh feedback.")

    @field_validator("tutor_checkpoint")
    @classmethod
    def _ckpt(cls, v):
        if isinstance(v, str) and not (0 < len(v) <= 64):
            raise ValueError("a checkpoint tag has 1 to 64 characters")
        return v


# --- metrics -----------------------------------------------------------------------------------------

class EvalOut(_Out):
    id: int
    round: int
    student: str
    domain: str
    split: str
    k: int
    accuracy: float
    n_items: int
    created_at: datetime


class MetricsOut(BaseModel):
    keys: list[str]
    series: dict[str, list[tuple[int, float]]] = Field(description="key -> [[global_step, value], ...]")
    next_since_step: int | None = Field(None, description="More steps follow: ask again with this since_step.")


class PresetOut(BaseModel):
    name: str
    config: dict[str, Any]
