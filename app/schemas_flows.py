"""The API's read model of a run's tutoring-flow matrix (``GET /api/v1/runs/{id}/flows``,
``app.services.flows``, whose docstring defines every number): its own module, beside ``app.schemas``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FlowDomain(BaseModel):
    """One (tutor, tutee, domain) cell of the matrix."""

    domain: str
    exchanges: int = Field(description="Every stored exchange whose own tutor (exchange.tutor: with N peers the "
                                       "first routed tutor) this is, of this tutee and domain (what exchanges_url "
                                       "lists), with or without feedback, human-edited ones included.")
    feedback: int = Field(description="This tutor's feedback rows on this tutee's rollouts of this domain that were "
                                      "given (any anchoring category; not shadow): on its own exchanges and on "
                                      "other tutors' (peer_feedback); human-edited exchanges are not counted.")
    kept: int = Field(description="Of those, the feedback anchoring kept (category 'kept').")
    kept_rate: float | None = Field(description="kept / feedback; null when there is no feedback.")
    peer_feedback: int = Field(description="Of feedback, the rows on exchanges whose own tutor is another one "
                                           "(routing mode 'all': several tutors' feedback used on one rollout).")
    peer_kept: int = Field(description="Of peer_feedback, the kept ones.")
    shadow: int = Field(description="This tutor's shadow feedback: written while quarantined, stored and probed, "
                                    "never used (any category; never in feedback, kept or kept_rate).")
    human_edited: int = Field(description="Exchanges made from a person's edit of the feedback (not counted above).")
    probes: int = Field(description="Break-rate probes of this tutor's given feedback on this tutee's questions of "
                                    "this domain.")
    opportunities: int = Field(description="Probes whose self-teacher was right without the feedback "
                                           "(breakrate's eligible).")
    breaks: int = Field(description="Opportunities the feedback turned wrong (breakrate's broken).")
    break_rate: float | None = Field(description="breaks / opportunities; null when there is no opportunity.")
    shadow_probes: int = Field(description="Break-rate probes of this tutor's shadow feedback (not in probes, "
                                           "opportunities or breaks; GET /runs/{id}/trust has their rates).")
    rounds: list[int] = Field(description="Rounds in which this tutor gave this tutee feedback on this domain.")
    accuracy_change: float | None = Field(
        description="Sum over those rounds r of the tutee's test accuracy on this domain after round r minus "
                    "before it (evaluation r minus evaluation r-1; round 0 = initial); null when no such pair "
                    "of evaluations exists.")
    accuracy_rounds: list[int] = Field(description="The rounds that accuracy_change sums (both evaluations stored).")
    exchanges_url: str = Field(description="The exchange list of this cell (tutor, tutee and domain filters; the "
                                           "tutor filter matches the exchange's own tutor): the 'exchanges'.")
    kept_url: str = Field(description="The cell's exchanges whose own feedback anchoring kept (not human-edited): "
                                      "kept - peer_kept of them, plus any exchange where only this quarantined "
                                      "tutor wrote and its shadow feedback was kept.")
    feedback_url: str = Field(description="The exchanges (not human-edited) with this tutor's feedback on the "
                                          "rollout (feedback_from filter): the 'feedback', peer_feedback included.")


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
