"""The one record type every dataset loader produces, and the split container.

A question is multiple choice (``answer_type="mcq"``: ``gold`` is a label such as ``"B"``) or
numeric (``answer_type="numeric"``: ``gold`` is the number as text, ``choices`` empty).
Ids are stable across runs (derived from the source, never from a random state) so that stored
exchanges can point back at the item that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Item:
    id: str
    domain: str
    question: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    gold: str
    answer_type: Literal["mcq", "numeric"] = "mcq"
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "domain": self.domain, "question": self.question,
            "choices": list(self.choices), "labels": list(self.labels), "gold": self.gold,
            "answer_type": self.answer_type, "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Item":
        return cls(id=d["id"], domain=d["domain"], question=d["question"],
                   choices=tuple(d["choices"]), labels=tuple(d["labels"]), gold=d["gold"],
                   answer_type=d.get("answer_type", "mcq"), meta=dict(d.get("meta") or {}))


@dataclass
class SplitDataset:
    """Items per domain per split: ``splits[domain][split] -> list[Item]``."""

    splits: dict[str, dict[str, list[Item]]]

    @property
    def domains(self) -> list[str]:
        return list(self.splits)

    def get(self, domain: str, split: str) -> list[Item]:
        return self.splits[domain][split]

    def by_id(self) -> dict[str, Item]:
        return {it.id: it for d in self.splits.values() for s in d.values() for it in s}
