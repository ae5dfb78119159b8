"""Deterministic, seeded train/validation/test splits per domain.

Method: within each domain, items are ordered by ``sha256(f"{seed}:{domain}:{item.id}")`` and the
ordered list is cut into train, validation and test. Because the key depends only on the seed and
the item's id (which loaders derive from content, not position), the split does not depend on file
order, on which other domains are loaded, or on Python's hash randomisation; a different seed gives a
different split. ``max_items_per_domain`` keeps the first N items of that same order, so a capped
dataset is a deterministic subset too. Each split's list stays in that hashed order, which is already
a shuffle, so a sequential data cursor sees a mixed stream.

Every split with a positive fraction gets at least one item per domain (so gating and evaluation
always have data); a domain with fewer items than that is an error naming the domain.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Sequence

from .records import normalize_domain
from .types import SPLITS, Item, SplitDataset


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, validation, test), got {tuple(fractions)}")
    fr = tuple(float(x) for x in fractions)
    if any(not math.isfinite(x) or x < 0 for x in fr):
        raise ValueError(f"fractions must be non-negative, got {fr}")
    if fr[0] <= 0:
        raise ValueError(f"the train fraction must be positive, got {fr}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fr} (sum {sum(fr)})")
    return fr  # type: ignore[return-value]


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """(train, validation, test) sizes for ``n`` items: rounded, at least 1 where the fraction > 0."""
    fr = check_fractions(fractions)
    need = sum(1 for x in fr if x > 0)
    if n < need:
        raise ValueError(f"{n} items cannot fill {need} splits")
    val = max(1, math.floor(n * fr[1] + 0.5)) if fr[1] > 0 else 0
    test = max(1, math.floor(n * fr[2] + 0.5)) if fr[2] > 0 else 0
    while n - val - test < 1:  # train keeps at least one item; shrink the larger of val/test
        if val >= test and val > 1:
            val -= 1
        elif test > 1:
            test -= 1
        else:
            val -= 1
    return n - val - test, val, test


def _key(seed: int, domain: str, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{domain}:{item_id}".encode("utf-8")).hexdigest()


def split_items(items: Iterable[Item], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                max_items_per_domain: int | None = None, domains: Sequence[str] = ()) -> SplitDataset:
    """Groups ``items`` by domain and splits each domain. ``domains`` fixes the domain order (and
    requires each to be present); otherwise domains are sorted by name."""
    fr = check_fractions(fractions)
    if max_items_per_domain is not None and max_items_per_domain < 1:
        raise ValueError(f"max_items_per_domain must be >= 1 or None, got {max_items_per_domain}")
    by_domain: dict[str, list[Item]] = {}
    for it in items:
        by_domain.setdefault(it.domain, []).append(it)
    order = [normalize_domain(d) for d in domains] if domains else sorted(by_domain)
    missing = [d for d in order if d not in by_domain]
    if missing:
        raise ValueError(f"no items for domain(s) {missing}; domains present: {sorted(by_domain)}")
    need = sum(1 for x in fr if x > 0)
    splits: dict[str, dict[str, list[Item]]] = {}
    for domain in order:
        ranked = sorted(by_domain[domain], key=lambda it: (_key(seed, domain, it.id), it.id))
        if max_items_per_domain is not None:
            ranked = ranked[:max_items_per_domain]
        if len(ranked) < need:
            raise ValueError(f"domain {domain!r} has {len(ranked)} item(s); at least {need} are needed so "
                             f"that train, validation and test each get one")
        n_train, n_val, _ = split_counts(len(ranked), fr)
        splits[domain] = {
            SPLITS[0]: ranked[:n_train],
            SPLITS[1]: ranked[n_train:n_train + n_val],
            SPLITS[2]: ranked[n_train + n_val:],
        }
    return SplitDataset(splits=splits)
