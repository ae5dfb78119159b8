"""What a benchmark keeps of a run's events (``BenchObserver``): small JSON-safe records for the result cache
and the reports, never the per-token arrays. Shared by the fidelity benchmark (``opcod_core.bench.fidelity``)
and its trio mode (``opcod_core.bench.trio``)."""

from __future__ import annotations

from opcod_core.events import BreakEvent, Event, ExchangeEvent, GateEvent, StepEvent, TrustEvent


class BenchObserver:
    """Keeps what the report needs from a run's events (not the per-token arrays): gates, anchoring
    categories, break probes (with their step), divergence, weight distance, the trust events (quarantines
    and lifts) and, per tutor, how much of its feedback a benchmark fault poisoned (``opcod_core.faults``)."""

    def __init__(self) -> None:
        self.gates: list[dict] = []
        self.categories: dict[str, dict[str, int]] = {}     # tutor -> category -> count
        self.breaks: list[dict] = []
        self.divergence: dict[str, list[float]] = {}        # "tutee|domain|context" -> [rollout loss]
        self.steps = 0
        self.weight_l2: dict[str, float] = {}               # tutee -> ‖θ − θ₀‖ after its last update
        self.trust: list[dict] = []                         # trust events, in order
        self.poison: dict[str, dict] = {}                   # tutor -> poisoned feedback counts

    def on_event(self, e: Event) -> None:
        if isinstance(e, GateEvent):
            self.gates.append(e.model_dump(include={"round", "student", "decision", "delta", "tau", "scores"}))
        elif isinstance(e, ExchangeEvent):
            if e.category:
                c = self.categories.setdefault(e.tutor, {})
                c[e.category] = c.get(e.category, 0) + 1
            if not e.skipped:
                key = f"{e.tutee}|{e.domain}|{e.context_used}"
                self.divergence.setdefault(key, []).append(float(e.loss or 0.0))
            self._count_poison(e)
        elif isinstance(e, BreakEvent):
            self.breaks.append({"tutor": e.tutor, "cognizant": e.tutor_cognizant, "broken": e.broken,
                                "correct_without_f": e.correct_without_f, "domain": e.domain,
                                "step": e.global_step, "shadow": bool(e.shadow)})
        elif isinstance(e, TrustEvent):
            self.trust.append(e.model_dump(include={"tutor", "action", "source", "step", "domain", "reason"}))
        elif isinstance(e, StepEvent):
            self.steps += 1
            l2 = e.metrics.get("train/weight_l2")
            if l2 is not None:   # the last value per tutee: how far training moved it from its start
                self.weight_l2[e.tutee] = float(l2)

    def _count_poison(self, e: ExchangeEvent) -> None:
        """Per tutor: poisoned feedbacks written, kept by anchoring and used in a teacher context, and the
        first and last global step of each (a record is marked ``poisoned`` only by the fault)."""
        for fb in e.feedbacks or ():
            if not fb.get("poisoned"):
                continue
            c = self.poison.setdefault(fb["tutor"], {"written": 0, "kept": 0, "used": 0, "first_step": None,
                                                     "last_used_step": None})
            c["written"] += 1
            c["kept"] += fb.get("category") == "kept"
            if c["first_step"] is None:
                c["first_step"] = e.global_step
            if fb.get("used"):
                c["used"] += 1
                c["last_used_step"] = e.global_step
