"""Per-domain splits: deterministic, seeded, independent of input order, disjoint, lossless."""

import random

import pytest

from opcod_core.data import DataSpec, load_dataset
from opcod_core.data.splits import split_counts, split_items
from opcod_core.data.types import SPLITS, Item


def _items(n_per_domain=20, domains=("chemistry", "physics")):
    return [Item(id=f"{d}-{i}", domain=d, question=f"q {d} {i}?", choices=("a", "b"), labels=("A", "B"), gold="A")
            for d in domains for i in range(n_per_domain)]


def _ids(ds):
    return {d: {s: [it.id for it in ds.get(d, s)] for s in SPLITS} for d in ds.domains}


def test_deterministic():
    assert _ids(split_items(_items(), seed=3)) == _ids(split_items(_items(), seed=3))


def test_seed_changes_split():
    assert _ids(split_items(_items(), seed=0)) != _ids(split_items(_items(), seed=1))


def test_input_order_does_not_matter():
    items = _items()
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert _ids(split_items(items, seed=5)) == _ids(split_items(shuffled, seed=5))


def test_other_domains_do_not_change_a_domain_split():
    alone = split_items(_items(domains=("chemistry",)), seed=2)
    mixed = split_items(_items(domains=("chemistry", "physics", "biology")), seed=2)
    assert _ids(alone)["chemistry"] == _ids(mixed)["chemistry"]


def test_disjoint_and_nothing_lost():
    items = _items(37)
    ds = split_items(items, fractions=(0.6, 0.2, 0.2), seed=0)
    for d in ds.domains:
        parts = [set(x) for x in _ids(ds)[d].values()]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    got = sorted(it.id for d in ds.domains for s in SPLITS for it in ds.get(d, s))
    assert got == sorted(it.id for it in items)


def test_fractions_respected():
    ds = split_items(_items(100, ("chemistry",)), fractions=(0.7, 0.15, 0.15))
    assert [len(ds.get("chemistry", s)) for s in SPLITS] == [70, 15, 15]


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 10])
def test_small_domains_get_one_per_split(n):
    counts = split_counts(n, (0.7, 0.15, 0.15))
    assert sum(counts) == n and min(counts) >= 1
    counts = split_counts(n, (0.98, 0.01, 0.01))
    assert sum(counts) == n and min(counts) >= 1


def test_too_small_domain_is_named():
    items = _items(10, ("chemistry",)) + _items(2, ("physics",))
    with pytest.raises(ValueError, match="physics"):
        split_items(items)


def test_zero_fraction_split_may_be_empty():
    ds = split_items(_items(10, ("chemistry",)), fractions=(0.8, 0.2, 0.0))
    assert len(ds.get("chemistry", "test")) == 0 and len(ds.get("chemistry", "train")) == 8


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (-0.1, 0.6, 0.5), (0.0, 0.5, 0.5)])
def test_bad_fractions(fractions):
    with pytest.raises(ValueError):
        split_items(_items(), fractions=fractions)


def test_cap_is_a_deterministic_subset():
    items = _items(50)
    capped = split_items(items, max_items_per_domain=10, seed=4)
    shuffled = items[::-1]
    assert _ids(capped) == _ids(split_items(shuffled, max_items_per_domain=10, seed=4))
    assert all(sum(len(capped.get(d, s)) for s in SPLITS) == 10 for d in capped.domains)


def test_domain_order_follows_request():
    ds = split_items(_items(), domains=("physics", "chemistry"))
    assert ds.domains == ["physics", "chemistry"]
    assert split_items(_items()).domains == ["chemistry", "physics"]
    with pytest.raises(ValueError, match="biology"):
        split_items(_items(), domains=("biology",))


def test_load_dataset_builtin_split_is_stable():
    a = load_dataset(DataSpec(source="builtin", split_seed=1))
    b = load_dataset(DataSpec(source="builtin", split_seed=1))
    c = load_dataset(DataSpec(source="builtin", split_seed=2))
    assert _ids(a) == _ids(b) and _ids(a) != _ids(c)
