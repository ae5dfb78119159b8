"""The three-specialist presets (issue 17): ``tiny-trio`` and ``sciworld3-trio`` build valid configs of three
students with distinct names and strong domains covering the run's domains, keep the promises their docstrings
make (tiny's budget and a gate that always lets a peer tutor; the version-3 pairs' schedule and cached
specialists), and every place that lists presets offers them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opcod_core.build import warmup_data, warmup_key
from opcod_core.cli import build_parser
from opcod_core.config import RunConfig, StudentConfig, preset, preset_names
from opcod_core.gating import cognizance_gap
from opcod_core.presets import WORLD3_DOMAINS, world3_pair, world3_specialist

TRIOS = ("tiny-trio", "sciworld3-trio")


@pytest.mark.parametrize("name", TRIOS)
def test_a_trio_is_three_specialists_one_per_domain(name):
    cfg = preset(name)
    assert isinstance(cfg, RunConfig) and cfg.preset == name and cfg.name == name
    names = [s.name for s in cfg.students]
    assert len(names) == 3 and len(set(names)) == 3
    assert [s.strong_domain for s in cfg.students] == list(cfg.data.domains) and len(set(cfg.data.domains)) == 3
    assert len({s.build_seed for s in cfg.students}) == 3   # three separately cached students
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_tiny_trio_is_tiny_with_three_warmed_specialists():
    trio, tiny = preset("tiny-trio"), preset("tiny")
    assert trio.data.source == "builtin" and set(trio.data.domains) == {"chemistry", "physics", "biology"}
    for s in trio.students:
        assert s.model.startswith("tiny:") and s.warmup_sft_steps > 0 and s.warmup_domains == (s.strong_domain,)
    # the same number of updates as tiny (one direction per student as tutee in each round)
    updates = lambda c: c.schedule.rounds * c.schedule.steps_per_direction * len(c.students)  # noqa: E731
    assert updates(trio) == updates(tiny)
    assert sum(s.warmup_sft_steps for s in trio.students) <= 1.25 * sum(s.warmup_sft_steps for s in tiny.students)
    for section in ("rollout", "tutor", "optim", "eval", "loss", "break_rate"):
        assert getattr(trio, section) == getattr(tiny, section), section


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.floats(0.0, 1.0), min_size=9, max_size=9))
def test_tiny_trio_gate_always_lets_a_peer_tutor(flat):
    """Whatever three students score on three domains, one of them has a gap within τ (the docstring's claim)."""
    cfg = preset("tiny-trio")
    names, domains = [s.name for s in cfg.students], list(cfg.data.domains)
    scores = {n: {d: flat[3 * i + j] for j, d in enumerate(domains)} for i, n in enumerate(names)}
    assert min(cognizance_gap(scores).values()) <= cfg.gating.tau


def test_tiny_trio_tau_is_the_smallest_that_guarantees_a_tutor():
    cfg = preset("tiny-trio")
    names, domains = [s.name for s in cfg.students], list(cfg.data.domains)
    only_own = {n: {d: 1.0 if d == s.strong_domain else 0.0 for d in domains} for n, s in zip(names, cfg.students)}
    assert min(cognizance_gap(only_own).values()) == cfg.gating.tau   # each specialist knows only its domain


def test_sciworld3_trio_is_the_pairs_specialists_at_the_pairs_schedule():
    trio, pair = preset("sciworld3-trio"), RunConfig.from_dict(world3_pair("chemistry", "physics"))
    assert trio.students == tuple(StudentConfig.model_validate(world3_specialist(d)) for d in WORLD3_DOMAINS)
    assert trio.students[:2] == pair.students
    assert list(trio.data.domains) == list(WORLD3_DOMAINS) and trio.data.source == "sciworld3"
    # the ladder (WORLD3_ROLES): on every domain one specialist; chemistry has two incognizant peers
    # (weak: partly known, corrupted facts elsewhere), physics one cognizant (partly known) and one
    # incognizant, electricity two cognizant
    roles = {d: sorted(("strong" if s.strong_domain == d else "weak" if d in (s.warmup_corrupt_domains or ())
                        else "partial" if d in (s.warmup_partial or {}) else "?") for s in trio.students)
             for d in WORLD3_DOMAINS}
    assert roles == {"chemistry": ["strong", "weak", "weak"], "physics": ["partial", "strong", "weak"],
                     "electricity": ["partial", "partial", "strong"]}
    for section in ("schedule", "rollout", "tutor", "gating", "optim", "eval", "loss", "break_rate"):
        assert getattr(trio, section) == getattr(pair, section), section
    assert trio.data.fractions == pair.data.fractions


def test_sciworld3_trio_reuses_the_pairs_cached_specialists():
    """The warm-up cache key of each specialist (data included) is the one it has in a pair."""
    from opcod_core.data.loading import load_dataset
    from opcod_core.trainer import data_spec

    trio = preset("sciworld3-trio")
    trio_data = load_dataset(data_spec(trio))
    keys = {s.name: warmup_key(s, trio, i, warmup_data(s, trio, trio_data)) for i, s in enumerate(trio.students)}
    pair = RunConfig.from_dict(world3_pair("physics", "electricity"))
    pair_data = load_dataset(data_spec(pair))
    for i, s in enumerate(pair.students):
        assert warmup_key(s, pair, i, warmup_data(s, pair, pair_data)) == keys[s.name], s.name


def test_every_preset_list_offers_the_trios(tmp_path):
    assert set(TRIOS) <= set(preset_names())
    for name in TRIOS:   # opcod train --preset NAME
        assert build_parser().parse_args(["train", "--preset", name, "--out", str(tmp_path)]).preset == name
