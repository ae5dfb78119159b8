"""Benchmark faults: a peer's feedback corrupted on purpose, to measure what tutor trust does about it.

Why: co-distillation among N peers (issue 17) claims that a tutor whose feedback turns bad is caught by
its break rate and quarantined (``opcod_core.trust``) before it damages the others. A real tutor does not
turn bad on cue, so the benchmark (``opcod bench fidelity --mode trio --poison TUTOR``) injects the fault:
from a given global step on, one named tutor's feedback is replaced by well-formed but wrong feedback.
This is a **benchmark fault, not a training feature**: nothing a researcher wants in a real run; it exists
so that the trust machinery can be tested against a known cause, and it is off by default (the ``faults``
section is then left out of the config's JSON, so existing runs, stored configs and cache keys are
unchanged: ``RunConfig.to_dict``).

Rules (``faults.poison``, kind ``corrupt_hint``, the only kind):

* From global step ``from_step`` on (steps before it are untouched), every feedback tutor ``tutor`` writes
  (``opcod_core.step_routing``: on the questions routed to it, and in the shadow while it is quarantined)
  is replaced, *before* the anchoring check classifies it, by ``<concept>C</concept> H``: C the
  question's concept (``meta["concept"]``; else the concept the tutor itself named; else no tag at all,
  which anchoring discards as ``no_concept_tag``), and H a wrong hint:
  - the item's ``meta["corrupt_hint"]`` where the world has one (``sciworld3``: the item's hint with its
    fact made wrong, the text an incognizant tutor writes);
  - else the hint (``meta["hint"]``, else the fact sentence ``meta["fact"]``) of another item of the same
    domain whose hint differs from this item's own, chosen with ``Random(f"{seed}-poison-{global_step}-{item
    id}")`` among the run's train items (a right fact about the wrong thing);
  - else (no such item) the feedback is left as the tutor wrote it, and not marked.
* The replaced text then goes through anchoring, sanitising, routing and the break probes like any
  feedback: the fault changes what the tutor says, never how it is judged.
* Each replaced feedback record carries ``"poisoned": True`` (``Row.feedbacks[tutor]``, written to the
  exchange event's ``feedbacks`` list, which an exchange then always carries); a record that was not
  replaced has no such key, so runs without the fault write exactly the events they always wrote.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Literal

from pydantic import Field

from opcod_core.data.types import Item
from opcod_core.student_config import Section

PoisonKind = Literal["corrupt_hint"]


class PoisonFault(Section):
    tutor: str = Field(min_length=1, description="The student whose feedback is corrupted (one of the run's students).")
    from_step: int = Field(0, ge=0, le=10_000_000, description="First global step (0-based) whose feedback is "
                           "corrupted; earlier steps are untouched.")
    kind: PoisonKind = Field("corrupt_hint", description="'corrupt_hint': the item's corrupted hint where the world "
                             "has one (sciworld3), else another same-domain item's hint, in the tutor format.")


class FaultsConfig(Section):
    poison: PoisonFault | None = Field(None, description="Benchmark fault, not a training feature: from a global "
                                       "step on, one tutor's feedback is replaced by well-formed but wrong "
                                       "feedback before anchoring (opcod_core.faults). None: off.")


#: The section at its default (left out of ``RunConfig.to_dict`` while unchanged).
FAULTS_DEFAULT: dict = FaultsConfig().model_dump(mode="json")


def _hint(item: Item) -> str | None:
    return item.meta.get("hint") or item.meta.get("fact")


@dataclass(frozen=True)
class Poisoner:
    """The poison fault of one run: which tutor, from which step, and the train items to draw wrong hints from."""

    tutor: str
    from_step: int
    seed: int
    by_domain: dict[str, tuple[Item, ...]]

    def applies(self, tutor: str, global_step: int) -> bool:
        return tutor == self.tutor and global_step >= self.from_step

    def feedback(self, item: Item, global_step: int, tutor_concept: str | None) -> str | None:
        """The poisoned raw feedback on ``item`` (module docstring), or None when there is no wrong hint."""
        hint = item.meta.get("corrupt_hint")
        if not hint:
            own = _hint(item)
            others = [it for it in self.by_domain.get(item.domain, ()) if _hint(it) and _hint(it) != own]
            if not others:
                return None
            hint = _hint(random.Random(f"{self.seed}-poison-{global_step}-{item.id}").choice(others))
        concept = item.meta.get("concept") or tutor_concept
        return f"<concept>{concept}</concept> {hint}" if concept else str(hint)


def poisoner(config, train_items: Iterable[Item]) -> Poisoner | None:
    """The run's ``Poisoner``, or None when ``faults.poison`` is off."""
    p = config.faults.poison
    if p is None:
        return None
    by_domain: dict[str, list[Item]] = {}
    for it in train_items:
        by_domain.setdefault(it.domain, []).append(it)
    return Poisoner(p.tutor, p.from_step, config.seed, {d: tuple(v) for d, v in by_domain.items()})
