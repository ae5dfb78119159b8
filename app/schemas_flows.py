"""The API's read model of a run's tutoring-flow matrix (``GET /api/v1/runs/{id}/flows``,
``app.services.flows``, whose docstring defines every number): its own module, beside ``app.schemas``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FlowDomain(BaseModel):
    """One (tutor, tutee, domain) cell of the matrix."""

    domain: str
    exchanges: int = Field(description="Every stored exchange of this tutor, tutee and domain (what exchanges_url "
                                       "lists), with or without feedback, human-edited ones included.")
    feedback: int = Field(description="Exchanges that carry the tutor's feedback (any anchoring category); "
                                      "human-edited exchanges are not counted.")
    kept: int = Field(description="Of those, the feedback anchoring kept (category 'kept').")
    kept_rate: float | None = Field(description="kept / feedback; null when there is no feedback.")
    human_edited: int = Field(description="Exchanges made from a person's edit of the feedback (not counted above).")
    probes: int = Field(description="Break-rate probes of this tutor on this tutee's questions of this domain.")
    opportunities: int = Field(description="Probes whose self-teacher was right without the feedback "
                                           "(breakrate's eligible).")
    breaks: int = Field(description="Opportunities the feedback turned wrong (breakrate's broken).")
    break_rate: float | None = Field(description="breaks / opportunities; null when there is no opportunity.")
    rounds: list[int] = Field(description="Rounds in which this tutor gave this tutee feedback on this domain.")
    accuracy_change: float | None = Field(
        description="Sum over those rounds r of the tutee's test accuracy on this domain after round r minus "
                    "before it (evaluation r minus evaluation r-1; round 0 = initial); null when no such pair "
                    "of evaluations exists.")
    accuracy_rounds: list[int] = Field(description="The rounds that accuracy_change sums (both evaluations stored).")
    exchanges_url: str = Field(description="The exchange list of this cell (tutor, tutee and domain filters).")
    kept_url: str = Field(description="The exchange list of the kept feedback counted in 'kept'.")


class FlowCell(BaseModel):
    tutee: str
    domains: list[FlowDomain] = Field(description="One entry per domain, in the run's domain order.")


class FlowRow(BaseModel):
    tutor: str
    cells: list[FlowCell] = Field(description="One cell per tutee (every other student), in student order.")


class FlowsOut(BaseModel):
    run_id: int
    students: list[str] = Field(description="Student names in position order (then any other name the rows carry).")
    domains: list[str] = Field(description="The run's domains (then any other domain the rows carry).")
    split: str = Field(description="The evaluation split of accuracy_change (the Pareto view's).")
    rows: list[FlowRow] = Field(description="One row per tutor, in student order.")
    unattributed_probes: int = Field(description="Break probes whose exchange is not stored (no domain to "
                                                 "count them under).")
