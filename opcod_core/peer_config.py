"""The configuration of co-distillation among N peers: how many peers and domains a run may have, how each
question's tutor is chosen (``RoutingConfig``) and when a tutor's feedback stops being trusted
(``TrustConfig``).

Why its own module: ``opcod_core.config`` keeps the run-level sections of the two-peer algorithm; these
are what N peers add (the rules are in ``opcod_core.routing``, ``opcod_core.trust`` and
``opcod_core.peers``). ``opcod_core.config`` re-exports both sections.

Defaults leave every existing config and preset unchanged: with two peers every routing mode picks the
one other peer, and ``trust.auto_quarantine`` is off. ``NEW_SECTION_DEFAULTS`` lists these sections with
their defaults: ``RunConfig.to_dict`` leaves a section out while it is at its default, so the JSON of a
config written before they existed (the ``run_start`` event, stored runs, the fidelity benchmark's run
cache keys) is unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from opcod_core.routing import MAX_PEERS, MIN_PEERS
from opcod_core.student_config import Section
from opcod_core.trust import DEFAULT_THRESHOLD, DEFAULT_Z

#: Domains a run may train on (every student is gated on every one of them).
MIN_DOMAINS, MAX_DOMAINS = 2, 8


class RoutingConfig(Section):
    mode: Literal["best", "round_robin", "all"] = Field(
        "best", description="Tutor of each question among the cognizant peers other than the tutee: the one "
                            "with the highest validation score on the question's domain (ties broken by the "
                            "seed), each in turn (round_robin), or every one (all: their kept feedback joined "
                            "in the teacher context). With two peers all three are the same.")
    max_tutors: int | None = Field(None, ge=1, le=MAX_PEERS - 1, description="Mode 'all': at most this many "
                                   "tutors per question, best validation score first (None: every cognizant peer).")

    @model_validator(mode="after")
    def _cap_needs_all(self) -> "RoutingConfig":
        if self.max_tutors is not None and self.mode != "all":
            raise ValueError(f"max_tutors caps mode 'all' only; mode '{self.mode}' has one tutor per question")
        return self


class TrustConfig(Section):
    auto_quarantine: bool = Field(False, description="Quarantine a tutor automatically when the Wilson lower "
                                  "bound of its break rate on some domain exceeds the threshold (its feedback is "
                                  "still generated and stored, never used), and lift it when the bound falls. Off: "
                                  "break counts and intervals are tracked, only people quarantine.")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0, description="Break-rate threshold of the "
                             "automatic quarantine (strict: the lower bound must exceed it).")
    z: float = Field(DEFAULT_Z, gt=0.0, le=10.0, description="z of the Wilson score interval (1.96: 95%).")
    recent: int | None = Field(None, ge=1, le=100_000, description="Also judge each tutor's last N opportunities "
                               "per domain alone (a tutor that turns bad after a clean record is caught without "
                               "waiting for its whole-run rate); empty: the whole run's counts only.")


#: Sections added for N peers, at their defaults (left out of ``RunConfig.to_dict`` while unchanged).
NEW_SECTION_DEFAULTS: dict[str, dict] = {"routing": RoutingConfig().model_dump(mode="json"),
                                         "trust": TrustConfig().model_dump(mode="json")}


def check_unique(names: tuple[str, ...], what: str) -> None:
    """Raise when ``names`` has a duplicate (pydantic's error location names the field)."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} must have different names; duplicate(s) {duplicates}")


__all__ = ["MAX_DOMAINS", "MAX_PEERS", "MIN_DOMAINS", "MIN_PEERS", "NEW_SECTION_DEFAULTS", "RoutingConfig",
           "TrustConfig", "check_unique"]
