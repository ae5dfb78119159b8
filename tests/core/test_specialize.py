"""Supervised specialisation (``opcod_core.specialize``): targets, schedule, batches, gradient
accumulation, the warm-up cache (keys of configs without it unchanged), and, on a controlled tiny world,
that it turns one base model into two specialists (validation accuracy per domain before and after)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import math

import pytest
import torch

from opcod_core.build import KEY_EXCLUDED, KEY_NEUTRAL_DEFAULTS, load_base, make_backend, student_fingerprint, warmup_key
from opcod_core.config import SpecializeConfig, StudentConfig, preset
from opcod_core.data.splits import split_items
from opcod_core.data.types import Item, SplitDataset
from opcod_core.specialize import lr_at, plan_batches, specialize, specialize_target
from opcod_core.student import StudentRuntime

# A controlled world for the skew test: in each domain an item's answer is the class number of the
# category named in its question (three categories per domain, a filler word makes the items differ).
# Validation items pair seen categories with unseen fillers, so learning a domain's train split answers
# its validation split; the two domains' answers are disjoint sets, so nothing learned from one domain
# answers the other. Numeric answers: no choice-letter lookup, which tiny models learn slowly
# (opcod_core.data.sciworld measured that).
CLASSES = {"chemistry": {"acid": 3, "metal": 5, "salt": 7}, "physics": {"force": 4, "wave": 6, "lens": 8}}
FILLERS = ("red", "blue", "green", "small", "large", "cold", "warm", "old", "new", "dark", "pale", "heavy",
           "light", "dry", "wet", "soft", "hard", "thin", "thick", "long", "round", "flat", "clear", "rough")


def class_world(split_seed: int = 0) -> SplitDataset:
    items = [Item(id=f"{d}-{c}-{f}", domain=d, question=f"A {f} sample is a {c}. What is its class number?",
                  choices=(), labels=(), gold=str(v), answer_type="numeric",
                  meta={"fact": f"A {c} has class number {v}."})
             for d, table in CLASSES.items() for c, v in table.items() for f in FILLERS]
    return split_items(items, seed=split_seed)


def _runtime(cfg, name, model, tok, template_kwargs=None):
    return StudentRuntime(name, model, tok, make_backend(cfg, model, tok, "cpu"), cfg.optim,
                          chat_template_kwargs=template_kwargs)


# ------------------------------------------------------------------ pure parts

def test_target_is_solution_then_answer_line():
    item = class_world().get("chemistry", "train")[0]
    fact = item.meta["fact"]
    assert specialize_target(item) == f"{fact}\nAnswer: {item.gold}"
    assert specialize_target(item, solutions=False) == f"Answer: {item.gold}"
    explained = Item(id="x", domain="chemistry", question="q?", choices=("a", "b"), labels=("A", "B"), gold="B",
                     meta={"explanation": "  Because b.  ", "fact": "ignored"})
    assert specialize_target(explained) == "Because b.\nAnswer: B"          # first key present wins
    bare = Item(id="y", domain="chemistry", question="q?", choices=("a", "b"), labels=("A", "B"), gold="A",
                meta={"source": "sciknoweval", "solution": ""})
    assert specialize_target(bare) == "Answer: A"


def test_learning_rate_schedule():
    cos = SpecializeConfig(lr=1e-3, lr_warmup_steps=4, schedule="cosine")
    lrs = [lr_at(s, 20, cos) for s in range(20)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4] == pytest.approx(1e-3) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert 0 < lrs[-1] < 0.02e-3
    const = SpecializeConfig(lr=1e-3, schedule="constant")
    assert {lr_at(s, 7, const) for s in range(7)} == {1e-3}


def test_batches_cover_each_epoch_once_and_steps_override_epochs():
    cfg = SpecializeConfig(batch_size=4, epochs=3)
    batches = plan_batches(10, cfg, seed=0, name="a")
    assert len(batches) == 3 * math.ceil(10 / 4)
    for e in range(3):
        epoch = [i for b in batches[3 * e:3 * e + 3] for i in b]
        assert sorted(epoch) == list(range(10))
    assert batches != plan_batches(10, cfg, seed=0, name="b")          # seeded per student
    assert batches == plan_batches(10, cfg, seed=0, name="a")
    stepped = plan_batches(10, SpecializeConfig(batch_size=4, epochs=3, steps=7), seed=0, name="a")
    assert stepped == batches[:7]
    assert len(plan_batches(10, SpecializeConfig(batch_size=4, steps=11), seed=0, name="a")) == 11


@pytest.fixture(scope="module")
def base():
    cfg = preset("tiny")
    model, tok = load_base(cfg.students[0], 0, cfg, {})
    return cfg, model, tok


def test_micro_batches_give_the_update_of_the_whole_batch(base):
    cfg, model, tok = base
    items = class_world().get("physics", "train")[:6]
    one, acc = (_runtime(cfg, n, copy.deepcopy(model), tok) for n in ("one", "acc"))
    # SGD: the update is linear in the gradient, so the two accumulation orders agree within float
    # tolerance on any CPU (Adam's first step divides by |g| and turns rounding noise where g ~ 0 into
    # differences of the order of the learning rate).
    for rt in (one, acc):
        rt._sft_optimizer = torch.optim.SGD(rt.model.parameters(), lr=1e-3)
    from opcod_core.prompts import rollout_messages

    prompts = [one.render(rollout_messages(it.question, [], [], "numeric")) for it in items]
    targets = [one.encode(specialize_target(it)) for it in items]
    loss_one = one.sft_step(prompts, targets, lr=1e-3)
    loss_acc = acc.sft_step(prompts, targets, lr=1e-3, micro_batch=4)  # chunks of 4 and 2
    assert loss_acc == pytest.approx(loss_one, rel=1e-5)
    changed = False
    for p1, p2, p0 in zip(one.model.parameters(), acc.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6)
        changed |= not torch.equal(p1, p0)
    assert changed


def test_too_long_examples_are_left_out_and_counted(base):
    cfg, model, tok = base
    rt = _runtime(cfg, "s", copy.deepcopy(model), tok)
    items = class_world().get("chemistry", "train")[:5]
    from opcod_core.prompts import rollout_messages

    lengths = [len(rt.render(rollout_messages(it.question, [], [], "numeric")))
               + len(rt.encode(specialize_target(it) + tok.eos_token)) for it in items]
    limit = sorted(lengths)[2]
    res = specialize(rt, items, SpecializeConfig(steps=1, max_length=limit, batch_size=8), seed=0)
    assert res.n_too_long == sum(n > limit for n in lengths) > 0
    assert res.n_examples == len(items) - res.n_too_long and len(res.curve) == 1
    with pytest.raises(ValueError, match="longer than specialize.max_length=16"):
        specialize(rt, items, SpecializeConfig(steps=1, max_length=16), seed=0)


# ------------------------------------------------------------------ config and cache

# StudentConfig's fields when warm-up keys were first computed. A field added since changes the key
# of every config unless it is left out at its default (build.KEY_NEUTRAL_DEFAULTS): cached warm-ups of
# the tiny and sciworld presets (and of old configs) must stay valid.
FIELDS_BEFORE_SPECIALIZE = {"name", "model", "strong_domain", "warmup_sft_steps", "warmup_domains", "warmup_lr",
                            "warmup_hinted_domains", "warmup_unhinted_fraction", "warmup_partial"}


def test_warmup_key_of_configs_without_the_new_fields_is_unchanged():
    assert set(StudentConfig.model_fields) - FIELDS_BEFORE_SPECIALIZE == set(KEY_NEUTRAL_DEFAULTS) | set(KEY_EXCLUDED), (
        "a new StudentConfig field must be key-neutral at its default (build.KEY_NEUTRAL_DEFAULTS) or not an "
        "input of the warm-up (build.KEY_EXCLUDED)")
    for name in ("tiny", "sciworld", "demo"):
        for st in preset(name).students:
            fp = student_fingerprint(st)
            assert set(fp) == FIELDS_BEFORE_SPECIALIZE
            assert fp == st.model_dump(mode="json", exclude=set(KEY_NEUTRAL_DEFAULTS) | set(KEY_EXCLUDED))
    cfg = preset("tiny")
    key = warmup_key(cfg.students[1], cfg, 1)
    with_kwargs = preset("tiny", {"students": [{}, {"chat_template_kwargs": {"enable_thinking": False}}]})
    assert warmup_key(with_kwargs.students[1], with_kwargs, 1) != key          # renders other prompts
    spec = preset("tiny", {"students": [{}, {"warmup_sft_steps": 0, "specialize": {"steps": 3}}]})
    spec2 = preset("tiny", {"students": [{}, {"warmup_sft_steps": 0, "specialize": {"steps": 4}}]})
    keys = {key, warmup_key(spec.students[1], spec, 1), warmup_key(spec2.students[1], spec2, 1)}
    assert len(keys) == 3


def test_specialize_config_is_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="set one of them"):
        preset("tiny", {"students": [{"specialize": {"steps": 3}}, {}]})        # tiny's warm-up is on
    with pytest.raises(ValidationError, match="needs a strong_domain"):
        preset("tiny", {"students": [{"warmup_sft_steps": 0, "strong_domain": None, "specialize": {}}, {}]})
    with pytest.raises(ValidationError, match="'biology' is not one of"):
        preset("tiny", {"students": [{"warmup_sft_steps": 0, "specialize": {"domains": ["biology"]}}, {}]})
    with pytest.raises(ValidationError, match="specialize.batch_size"):
        preset("tiny", {"students": [{"warmup_sft_steps": 0, "specialize": {"batch_size": 0}}, {}]})
    paper = preset("paper")
    assert all(s.specialize is not None and s.warmup_sft_steps == 0 for s in paper.students)
    assert paper.students[0].model == paper.students[1].model                   # one base, two specialists
    # the other path: two specialist checkpoints, no stage
    ckpt = preset("paper", {"students": [{"model": "/ckpt/chem", "specialize": None},
                                         {"model": "/ckpt/mat", "specialize": None}]})
    assert [s.specialize for s in ckpt.students] == [None, None]


def test_build_student_specialises_on_its_strong_domain_and_caches(tmp_path):
    from opcod_core.build import build_student, specialize_items

    data = class_world()
    cfg = preset("tiny", {"students": [{}, {"warmup_sft_steps": 0,
                                             "specialize": {"steps": 2, "batch_size": 4, "lr": 1e-3}}]})
    assert {it.domain for it in specialize_items(cfg.students[1], data)} == {"physics"}
    calls: list[tuple] = []
    first = build_student(1, cfg, data, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    assert [c[:3] for c in calls] == [("specialise phys", 1, 2), ("specialise phys", 2, 2)]
    calls.clear()
    again = build_student(1, cfg, data, cache_dir=tmp_path, progress=lambda *a: calls.append(a))
    assert calls == []                                                          # reloaded from the cache
    for p1, p2 in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(p1, p2)
    fresh, _ = load_base(cfg.students[1], 1, cfg, {})
    assert any(not torch.equal(p1, p0) for p1, p0 in zip(first.model.parameters(), fresh.parameters(), strict=True))


# ------------------------------------------------------------------ the intended skew

def _accuracy(rt, data) -> dict[str, float]:
    from opcod_core.evaluation import evaluate_domains

    scores = evaluate_domains(rt, {d: data.get(d, "validation") for d in CLASSES}, k=1, temperature=0.0,
                              max_new_tokens=20, seed=0)
    return {d: s.accuracy for d, s in scores.items()}


def specialists_from_one_base(seed: int) -> dict[str, dict[str, float]]:
    """Validation accuracy per domain of a tiny base model and of the two specialists made from it."""
    from opcod_core.build import specialize_items

    data = class_world(split_seed=seed)
    stage = {"steps": 50, "batch_size": 16, "micro_batch": 8, "lr": 3e-3, "schedule": "constant", "max_length": 256}
    cfg = preset("tiny", {"seed": seed, "students": [{"warmup_sft_steps": 0, "specialize": stage},
                                                     {"warmup_sft_steps": 0, "specialize": stage}]})
    model, tok = load_base(cfg.students[0], 0, cfg, {})
    out = {"base": _accuracy(_runtime(cfg, "base", copy.deepcopy(model), tok), data)}
    for index, st in enumerate(cfg.students):
        rt = _runtime(cfg, st.name, copy.deepcopy(model), tok, st.chat_template_kwargs)
        specialize(rt, specialize_items(st, data), st.specialize, seed=seed * 7 + index)
        out[st.name] = _accuracy(rt, data)
    return out


@pytest.mark.slow
def test_specialisation_turns_one_base_into_two_specialists():
    acc = specialists_from_one_base(seed=0)
    assert len(class_world().get("chemistry", "validation")) >= 10
    strong = {"chem": "chemistry", "phys": "physics"}
    assert max(acc["base"].values()) <= 0.2, acc                       # a random model: no answer format
    for name, own in strong.items():
        other = next(d for d in CLASSES if d != own)
        assert acc[name][own] >= 0.8, acc
        assert acc[name][own] - acc[name][other] >= 0.6, acc
        assert acc[name][own] - acc["base"][own] >= 0.6, acc
