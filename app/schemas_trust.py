"""The API's read model of a run's tutor trust (``GET /api/v1/runs/{id}/trust``, ``app.services.trust``, whose
docstring defines every number): its own module, beside ``app.schemas``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TrustPoint(BaseModel):
    """A tutor's cumulative break counts after one global step at which it was probed, with the Wilson interval."""

    global_step: int
    round: int
    probes: int = Field(description="Probes of this tutor at this step (shadow ones included).")
    opportunities: int = Field(description="Cumulative: probes whose self-teacher was right without the feedback "
                                           "(breakrate's eligible), up to and including this step.")
    breaks: int = Field(description="Cumulative: opportunities the feedback turned wrong (breakrate's broken).")
    rate: float | None = Field(description="breaks / opportunities; null without an opportunity.")
    lower: float = Field(description="Wilson lower bound of the rate at the run's z (0 without an opportunity).")
    upper: float = Field(description="Wilson upper bound (1 without an opportunity).")


class TrustDomain(BaseModel):
    domain: str = Field(description="The domain of the tutee's questions the probes were made on.")
    points: list[TrustPoint]


class QuarantinePeriod(BaseModel):
    """From the quarantine that opened it to the change that closed it (or open)."""

    from_step: int = Field(description="The global step from which the tutor's feedback was not used.")
    to_step: int | None = Field(description="The global step from which it was used again; null: still quarantined.")
    source: str = Field(description="auto (the break probes) or human (a run-level override).")
    reason: str
    domain: str | None = Field(description="The domain that triggered an automatic quarantine.")
    override_id: int | None = Field(description="The override of a human quarantine.")
    lift_source: str | None = Field(None, description="Who ended it: auto, human; null while open.")
    lift_reason: str | None = None
    lift_override_id: int | None = None


class TrustChangeOut(BaseModel):
    """One stored trust change (a ``trust`` event of the trainer)."""

    id: int
    tutor: str
    action: str = Field(description="quarantine or lift.")
    source: str = Field(description="auto or human.")
    step: int = Field(description="The global step from which it holds.")
    round: int
    reason: str
    domain: str | None
    override_id: int | None
    created_at: datetime


class TrustRecent(BaseModel):
    """A tutor's last ``recent`` opportunities on one domain (the rule's recent window, ``opcod_core.trust``)."""

    domain: str
    opportunities: int = Field(description="The last trust.recent opportunities on this domain since the tutor's "
                                           "last human lift (fewer when it has had fewer).")
    breaks: int
    rate: float | None
    lower: float = Field(description="Wilson lower bound of this window's rate at the run's z.")
    over: bool = Field(description="The lower bound exceeds the threshold.")


class TutorTrust(BaseModel):
    tutor: str
    quarantined: bool = Field(description="Quarantined at the end of the stored changes.")
    probes: int = Field(description="Every probe of this tutor's feedback.")
    shadow_probes: int = Field(description="Of those, probes of its feedback written while quarantined.")
    opportunities: int
    breaks: int
    rate: float | None
    lower: float
    upper: float
    over_threshold: list[str] = Field(description="Domains whose cumulative Wilson lower bound exceeds the "
                                                  "threshold (the automatic rule judges a window after a human "
                                                  "lift; these are the cumulative counts).")
    recent: list[TrustRecent] = Field(default_factory=list, description="With trust.recent set: its recent window "
                                      "per domain with opportunities, in the run's domain order (empty when off).")
    points: list[TrustPoint] = Field(description="Every domain together, one point per step with probes.")
    domains: list[TrustDomain] = Field(description="Per domain of the tutee's questions, in the run's domain order.")
    periods: list[QuarantinePeriod]
    changes: list[TrustChangeOut]


class TrustOut(BaseModel):
    run_id: int
    threshold: float = Field(description="The run's trust.threshold (a tutor is quarantined automatically when a "
                                         "domain's Wilson lower bound exceeds it, with auto_quarantine).")
    z: float = Field(description="The run's trust.z (z of the Wilson score intervals).")
    auto_quarantine: bool
    recent: int | None = Field(None, description="The run's trust.recent: the automatic rule also judges each "
                                                 "tutor's last N opportunities per domain; null: off.")
    students: int = Field(description="Students of the run.")
    last_step: int | None = Field(description="The newest stored step's global step (the reputations' x range).")
    domains: list[str]
    tutors: list[TutorTrust] = Field(description="Every student, in position order, then any other tutor the rows "
                                                 "name.")
    undomained_probes: int = Field(description="Probes stored without a domain (their exchange was not stored before "
                                               "migration 0010): counted in a tutor's points, in no domain's.")
