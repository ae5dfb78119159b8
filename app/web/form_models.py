"""The dashboard's HTML forms as FastAPI form models (``Annotated[Model, Form()]``).

Each model declares what its form posts (FastAPI parses the body into it) and turns itself into the
request model of the service it calls (``request()``), the same models the REST API validates, so the
browser and a script meet the same rules. A value the service refuses comes back as ``app.errors.Invalid``
with field paths; ``inline_errors`` maps them onto the form's own fields (the one helper for every form).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import DomainError, Invalid
from app.schemas import ApprovalDecisionIn, ExchangeOverrideIn, ForkRequest, ReplayIn, RunOverrideIn
from opcod_core.vocabulary import (TRUST_OVERRIDE_KINDS, TUTOR_OVERRIDE_KINDS, ExchangeOverrideKind, RunOverrideKind,
                                   values)

AUTHOR = "dashboard"


def _validated(model: type[BaseModel], **data) -> BaseModel:
    try:
        return model(**data)
    except ValidationError as err:
        raise Invalid.from_validation_error(err, message="invalid form") from None


def inline_errors(exc: DomainError, rename: dict[str, str] | None = None) -> dict[str, str]:
    """Field name -> message for a form ("" holds what belongs to no field); ``rename`` maps a request
    field to the form field that sets it."""
    rename = rename or {}
    if not exc.fields:
        return {"": exc.message}
    return {rename.get(f["path"], f["path"]): f["message"] for f in exc.fields}


def first_error(exc: DomainError) -> str:
    """The message a one-field form shows."""
    return exc.fields[0]["message"] if exc.fields else exc.message


class LaunchForm(BaseModel):
    """The launch form: a preset and its fields (named by config path: ``rollout.n``, ``students.2.name``, ...),
    or the advanced editor's YAML/JSON (``use_advanced``). ``app.web.forms.build_config`` validates it.
    ``student_rows`` says which preset student each row came from, ``row_action`` adds or removes a row and
    ``load_preset`` reloads the form with the chosen preset (``app.web.launch_rows``)."""

    model_config = ConfigDict(extra="allow")

    preset: str = "tiny"
    use_advanced: bool = False
    config_text: str = ""
    student_rows: str | None = None
    row_action: str = ""
    load_preset: str = ""
    csrf_token: str = ""  # checked by app.web.csrf before the route runs; not a config field

    def values(self) -> dict:
        return self.model_dump(exclude={"csrf_token", "load_preset"})


class RunOverrideForm(BaseModel):
    """The run page's override form: one kind, and the field that kind reads (the tutor, τ, the gating
    mode, or a quarantine's or lift's optional reason)."""

    kind: str = ""
    student: str = ""
    tau: str = ""
    mode: str = ""
    reason: str = ""

    def request(self) -> RunOverrideIn:
        if self.kind not in values(RunOverrideKind):
            raise Invalid.field("kind", "choose what to change")
        value: float | str | None = None
        if self.kind == "set_tau":
            try:
                value = float(self.tau)
            except ValueError:
                raise Invalid.field("tau", "τ must be a number") from None
        elif self.kind == "set_mode":
            value = self.mode or None
        elif self.kind in TRUST_OVERRIDE_KINDS:
            value = self.reason.strip() or None
        student = (self.student or None) if self.kind in TUTOR_OVERRIDE_KINDS else None
        return _validated(RunOverrideIn, kind=self.kind, student=student, value=value, author=AUTHOR)

    def field_of(self) -> dict[str, str]:
        """The form field behind the request's ``value``."""
        if self.kind in TRUST_OVERRIDE_KINDS:
            return {"value": "reason"}
        return {"value": "tau" if self.kind == "set_tau" else "mode"}


class ForkForm(BaseModel):
    checkpoint_id: int | None = Field(None, ge=1, le=2**31 - 1)
    name: str = ""

    def request(self) -> ForkRequest:
        return _validated(ForkRequest, checkpoint_id=self.checkpoint_id, name=self.name.strip() or None)


class ExchangeOverrideForm(BaseModel):
    action: str = ""
    text: str | None = None

    def request(self) -> ExchangeOverrideIn:
        if self.action not in values(ExchangeOverrideKind):
            raise Invalid.field("action", "choose edit, reject or approve")
        return _validated(ExchangeOverrideIn, kind=self.action, text=self.text if self.action == "edit" else None,
                          author=AUTHOR)


class ReplayForm(BaseModel):
    feedback: str | None = None
    tutor_checkpoint: str | None = None

    def request(self) -> ReplayIn:
        ckpt: int | str | None = self.tutor_checkpoint or None
        if isinstance(ckpt, str) and ckpt.isdigit():
            ckpt = int(ckpt)
        feedback = self.feedback if self.feedback and self.feedback.strip() else None
        return _validated(ReplayIn, feedback_text=feedback, tutor_checkpoint=ckpt)


class ApprovalForm(BaseModel):
    decision: str = ""
    text: str | None = None
    run_id: int | None = Field(None, ge=1, le=2**31 - 1)

    def request(self) -> ApprovalDecisionIn:
        if self.decision not in ("approve", "reject", "edit"):
            raise Invalid.field("decision", "choose approve, edit or reject")
        return _validated(ApprovalDecisionIn, decision=self.decision,
                          text=self.text if self.decision == "edit" else None, author=AUTHOR)
