"""The built-in data set: deterministic, well formed, short, anchored on a concept in the question."""

from collections import Counter

import pytest

from opcod_core.data import BUILTIN_DOMAINS, DataSpec, builtin_corpus, builtin_items, is_correct, load_dataset
from opcod_core.data.types import SPLITS


def test_domains_and_sizes():
    counts = Counter(it.domain for it in builtin_items())
    assert set(counts) == set(BUILTIN_DOMAINS) >= {"chemistry", "physics"}
    assert all(150 <= n <= 300 for n in counts.values()), counts


def test_deterministic_and_unique_ids():
    a, b = builtin_items(), builtin_items()
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert len({it.id for it in a}) == len(a)


def test_items_well_formed():
    for it in builtin_items():
        assert it.answer_type == "mcq"
        assert it.labels == ("A", "B", "C", "D")
        assert len(set(it.choices)) == 4
        assert it.gold in it.labels
        assert it.choices[it.labels.index(it.gold)] == it.meta["answer_text"]
        # the anchoring check looks for the tutor's concept in the question text
        assert it.meta["concept"].lower() in it.question.lower()
        assert it.meta["answer_text"] in it.meta["fact"] and it.meta["concept"].lower() in it.meta["fact"].lower()
        assert len((it.question + " " + " ".join(it.choices)).split()) <= 40


def test_gold_positions_vary():
    golds = Counter(it.gold for it in builtin_items())
    assert set(golds) == {"A", "B", "C", "D"}
    assert min(golds.values()) > 0.15 * sum(golds.values())


def test_gold_answers_verify():
    for it in builtin_items()[:50]:
        assert is_correct(it, f"Answer: {it.gold}") == (it.gold, True)


def test_corpus_covers_every_text():
    corpus = set(builtin_corpus())
    assert builtin_corpus() == sorted(corpus)
    for it in builtin_items():
        assert it.question in corpus
        assert set(it.choices) <= corpus
        assert it.meta["fact"] in corpus


def test_domain_filter_and_unknown_domain():
    assert {it.domain for it in builtin_items(["Physics"])} == {"physics"}
    with pytest.raises(ValueError, match="astrology"):
        builtin_items(["astrology"])
    with pytest.raises(ValueError, match="astrology"):
        load_dataset(DataSpec(source="builtin", domains=("astrology",)))


def test_meta_is_not_shared_between_calls():
    a = builtin_items()
    a[0].meta["touched"] = True
    assert "touched" not in builtin_items()[0].meta


def test_load_dataset_builtin():
    ds = load_dataset(DataSpec(source="builtin", domains=("chemistry", "physics")))
    assert ds.domains == ["chemistry", "physics"]
    for d in ds.domains:
        assert all(len(ds.get(d, s)) >= 10 for s in SPLITS)
    capped = load_dataset(DataSpec(source="builtin", max_items_per_domain=30))
    assert all(sum(len(capped.get(d, s)) for s in SPLITS) == 30 for d in capped.domains)
