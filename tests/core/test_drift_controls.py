"""Teacher and optimizer options that control drift (issue 12, items 2-4): AdamW betas/eps, the
learning-rate warm-up and schedule, the EMA self-teacher, the KL anchor to the initial policy, the
weight-distance metric and the one_way baseline's frozen teacher. Real tiny models, no mocks."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from opcod_core.baselines import one_way_examples
from opcod_core.build import build_student
from opcod_core.config import LossConfig, format_validation_error, preset
from opcod_core.data import load_dataset
from opcod_core.models import token_logits
from opcod_core.optim import lr_factor, set_lr
from opcod_core.prompts import rollout_messages, teacher_messages
from opcod_core.reference import swapped_weights
from opcod_core.step import Row
from opcod_core.student_types import DistillExample
from opcod_core.trainer import data_spec


# --- config -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, field", [
    ({"optim": {"betas": [1.0, 0.999]}}, "optim.betas.0"),
    ({"optim": {"betas": [0.9, -0.1]}}, "optim.betas.1"),
    ({"optim": {"eps": 0}}, "optim.eps"),
    ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps"),
    ({"optim": {"schedule": "linear"}}, "optim.schedule"),
    ({"optim": {"min_lr_ratio": 1.5}}, "optim.min_lr_ratio"),
    ({"optim": {"warmup_steps": 12}}, "optim.warmup_steps"),        # tiny: 2 x 3 = 6 updates per student
    ({"teacher": {"ema_rate": 1.5}}, "teacher.ema_rate"),
    ({"teacher": {"ema_rate": 0.1}, "algorithm": "grpo"}, "teacher.ema_rate"),
    ({"loss": {"kl_anchor": -0.1}}, "loss.kl_anchor"),
    ({"one_way_domains": "weak"}, "one_way_domains"),
    ({"one_way_domains": "strong"}, "one_way_domains"),               # algorithm is opcod
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ValidationError) as err:
        preset("tiny", overrides)
    assert any(field in line for line in format_validation_error(err.value)), format_validation_error(err.value)


def test_defaults_keep_todays_behaviour():
    cfg = preset("tiny")
    assert cfg.optim.betas == (0.9, 0.999) and cfg.optim.eps == 1e-8
    assert cfg.optim.warmup_steps == 0 and cfg.optim.schedule == "constant"
    assert cfg.teacher.ema_rate is None and cfg.loss.kl_anchor == 0.0 and cfg.one_way_domains == "all"
    ok = preset("tiny", {"algorithm": "one_way", "one_way_domains": "strong", "teacher": {"ema_rate": 0},
                         "optim": {"betas": [0.5, 0.9], "warmup_steps": 5, "schedule": "cosine"}})
    assert ok.optim.betas == (0.5, 0.9)


# --- learning-rate schedule ----------------------------------------------------------------------------

def test_lr_factor_at_known_update_counts():
    # no warm-up, constant: today's behaviour
    assert [lr_factor(u, 0, 10) for u in (0, 5, 50)] == [1.0, 1.0, 1.0]
    # linear warm-up over 4 updates: 1/4, 2/4, 3/4, 4/4, then the schedule
    assert [lr_factor(u, 4, 10) for u in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # cosine over 10 updates down to 0.1: 1 at the start, the midpoint halfway, 0.1 from the end on
    assert lr_factor(0, 0, 10, "cosine", 0.1) == 1.0
    assert lr_factor(5, 0, 10, "cosine", 0.1) == pytest.approx(0.55)
    assert lr_factor(10, 0, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(99, 0, 10, "cosine", 0.1) == pytest.approx(0.1)
    # warm-up then cosine: the decay spans the updates after the warm-up
    assert lr_factor(1, 2, 12, "cosine", 0.0) == 1.0
    assert lr_factor(2, 2, 12, "cosine", 0.0) == 1.0
    assert lr_factor(7, 2, 12, "cosine", 0.0) == pytest.approx(0.5)
    factors = [lr_factor(u, 2, 12, "cosine", 0.0) for u in range(2, 13)]
    assert all(a > b for a, b in zip(factors, factors[1:]))


def test_set_lr_sets_every_group():
    cfg = preset("tiny", {"optim": {"lr": 0.01, "warmup_steps": 2, "schedule": "cosine"}}).optim
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                             {"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.5}], lr=1.0)
    assert set_lr(opt, cfg, 0, 6) == pytest.approx(0.005)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.005)] * 2


# --- runtime: EMA, KL anchor, weight distance ---------------------------------------------------------

def _student(overrides: dict | None = None, index: int = 0):
    cfg = preset("tiny", {"students": [{"warmup_sft_steps": 0}, {"warmup_sft_steps": 0}], **(overrides or {})})
    data = load_dataset(data_spec(cfg))
    return build_student(index, cfg, data), cfg, data


def _examples(rt, data, n: int = 4) -> list[DistillExample]:
    out = []
    for it in data.get("chemistry", "train")[:n]:
        sp = rt.render(rollout_messages(it.question, list(it.labels), list(it.choices), it.answer_type))
        tp = rt.render(teacher_messages(it.question, list(it.labels), list(it.choices), it.answer_type,
                                        solution=f"Answer: {it.gold}", feedback=None))
        out.append(DistillExample(sp, rt.encode(f"The answer is {it.gold}. Answer: {it.gold}"), tp))
    return out


def _params(rt) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in rt.model.named_parameters()}


def test_optimizer_uses_betas_and_eps_and_the_schedule_logs_train_lr():
    rt, cfg, data = _student({"optim": {"lr": 0.01, "betas": [0.5, 0.9], "eps": 1e-6, "warmup_steps": 2}})
    group = rt.optimizer.param_groups[0]
    assert group["betas"] == (0.5, 0.9) and group["eps"] == 1e-6
    lrs = [rt.distill_step(_examples(rt, data), cfg.loss).metrics["train/lr"] for _ in range(3)]
    assert lrs == [pytest.approx(0.005), pytest.approx(0.01), pytest.approx(0.01)]
    assert rt.updates == 3


def test_warm_up_keeps_its_own_learning_rate_and_optimizer():
    rt, cfg, data = _student({"optim": {"lr": 0.01, "warmup_steps": 3, "schedule": "cosine"}})
    ex = _examples(rt, data)
    rt.sft_step([e.student_prefix for e in ex], [e.rollout for e in ex], lr=0.002)
    assert rt._sft_optimizer is not rt.optimizer
    assert rt._sft_optimizer.param_groups[0]["lr"] == 0.002
    assert rt.updates == 0   # the supervised step does not advance the schedule
    rt.reset_optimizer()
    assert rt._sft_optimizer is None


def test_ema_after_one_update_is_the_formula():
    rate = 0.25
    rt, cfg, data = _student({"teacher": {"ema_rate": rate}, "optim": {"lr": 0.01}})
    theta0 = _params(rt)
    assert all(torch.equal(rt.ema.tensors[n], theta0[n]) for n in theta0)   # starts at the initial weights
    out = rt.distill_step(_examples(rt, data), cfg.loss)
    assert out.metrics["train/trained"] > 0
    theta1 = _params(rt)
    assert any(not torch.equal(theta0[n], theta1[n]) for n in theta0)
    for n in theta0:
        expected = (1 - rate) * theta0[n] + rate * theta1[n]
        assert torch.allclose(rt.ema.tensors[n], expected, atol=1e-7, rtol=1e-6), n


def test_ema_teacher_scores_with_the_ema_weights():
    rt, cfg, data = _student({"teacher": {"ema_rate": 0.5}, "optim": {"lr": 0.01}})
    ex = _examples(rt, data)
    rt.distill_step(ex, cfg.loss)
    teacher = rt.teacher_logits(ex[:2])[0]
    rt.model.eval()
    with torch.no_grad():
        live = token_logits(rt.model, [e.teacher_prefix for e in ex[:2]], [e.rollout for e in ex[:2]])[0]
        for n, p in rt.model.named_parameters():   # load the EMA into the model for real and compare
            p.copy_(rt.ema.tensors[n])
        ema = token_logits(rt.model, [e.teacher_prefix for e in ex[:2]], [e.rollout for e in ex[:2]])[0]
    assert torch.allclose(teacher, ema, atol=1e-5)
    assert not torch.allclose(teacher, live, atol=1e-5)


def test_kl_anchor_is_zero_at_the_start_and_positive_after_updates():
    rt, cfg, data = _student({"loss": {"kl_anchor": 0.5}, "optim": {"lr": 0.01}})
    ex = _examples(rt, data)
    first = rt.distill_step(ex, cfg.loss)
    assert first.metrics["loss/kl_anchor"] == pytest.approx(0.0, abs=1e-6)   # identical weights
    assert first.metrics["train/weight_l2"] > 0
    later = [rt.distill_step(ex, cfg.loss).metrics for _ in range(3)]
    assert all(m["loss/kl_anchor"] > 1e-6 for m in later)
    off = rt.distill_step(ex, LossConfig(chunk_size=64))
    assert "loss/kl_anchor" not in off.metrics


def test_kl_anchor_pulls_towards_the_initial_weights():
    """Same data, same steps: the anchored student ends nearer its initial weights."""
    distances = {}
    for coef in (0.0, 50.0):
        rt, cfg, data = _student({"loss": {"kl_anchor": coef}, "optim": {"lr": 0.01}})
        ex = _examples(rt, data)
        for _ in range(4):
            m = rt.distill_step(ex, cfg.loss).metrics
        distances[coef] = m["train/weight_l2"]
    assert distances[50.0] < distances[0.0]


def test_weight_l2_is_the_distance_from_the_initial_weights():
    rt, cfg, data = _student({"optim": {"lr": 0.01}})
    theta0 = _params(rt)
    m = rt.distill_step(_examples(rt, data), cfg.loss).metrics
    manual = math.sqrt(sum(float((p.detach() - theta0[n]).pow(2).sum()) for n, p in rt.model.named_parameters()))
    assert m["train/weight_l2"] == pytest.approx(manual, rel=1e-5) and manual > 0


def test_reference_teacher_is_the_frozen_initial_weights():
    peer, cfg, data = _student({"optim": {"lr": 0.01}})
    ex = _examples(peer, data)
    before = peer.teacher_logits(ex, weights="reference")
    for _ in range(2):
        peer.distill_step(ex, cfg.loss)   # the peer trains in its own direction
    after = peer.teacher_logits(ex, weights="reference")
    live = peer.teacher_logits(ex)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(after, live, strict=True))


def test_swapped_weights_restores_the_live_weights():
    rt, cfg, data = _student()
    theta = _params(rt)
    zeros = {n: torch.zeros_like(t) for n, t in theta.items()}
    with pytest.raises(RuntimeError, match="boom"):
        with swapped_weights(rt.model, zeros):
            assert all(float(p.detach().abs().sum()) == 0 for p in rt.model.parameters())
            raise RuntimeError("boom")
    assert all(torch.equal(p, theta[n]) for n, p in rt.model.named_parameters())


def test_one_way_strong_skips_prompts_outside_the_peers_strong_domain():
    cfg = preset("tiny")
    data = load_dataset(data_spec(cfg))
    items = data.get("chemistry", "train")[:2] + data.get("physics", "train")[:2]
    rows = [Row(it, p, 0, [1, 2], [3], "x", None, False) for p, it in enumerate(items)]
    one_way_examples(rows, "physics")
    assert [r.used for r in rows] == ["none", "none", "peer", "peer"]
    assert [r.example.teacher_prefix is None for r in rows] == [True, True, False, False]
    one_way_examples(rows)
    assert all(r.used == "peer" and r.example.teacher_prefix == r.prompt_ids for r in rows)


def test_save_and_load_keep_reference_and_ema(tmp_path):
    rt, cfg, data = _student({"teacher": {"ema_rate": 0.3}, "optim": {"lr": 0.01}})
    ex = _examples(rt, data)
    rt.distill_step(ex, cfg.loss)
    rt.save(tmp_path / "a")
    rt.distill_step(ex, cfg.loss)
    rt.save(tmp_path / "b", previous=tmp_path / "a")
    assert (tmp_path / "b" / "reference.safetensors").stat().st_ino == (tmp_path / "a" / "reference.safetensors").stat().st_ino
    fresh, _, _ = _student({"teacher": {"ema_rate": 0.3}, "optim": {"lr": 0.01}})
    fresh.load(tmp_path / "b")
    assert fresh.updates == 2
    assert all(torch.equal(fresh.reference.tensors[n], rt.reference.tensors[n]) for n in rt.reference.tensors)
    assert all(torch.equal(fresh.ema.tensors[n], rt.ema.tensors[n]) for n in rt.ema.tensors)


# --- whole runs ---------------------------------------------------------------------------------------

def _run(cfg, out, cache, controls=None, resume=False):
    from opcod_core.observer import CollectingObserver
    from opcod_core.trainer import Trainer

    obs = CollectingObserver()
    tr = Trainer(cfg, out, observer=obs, controls=controls, cache_dir=cache)
    return tr, obs, tr.run(resume=resume)


def _comparable(events):
    out = []
    for e in events:
        if e["type"] in ("gate", "exchange", "step", "eval", "break"):
            if e["type"] == "step":
                e = {**e, "metrics": {k: v for k, v in e["metrics"].items()
                                      if not k.startswith(("time/", "throughput/"))}}
            out.append(e)
    return out


@pytest.mark.slow
def test_resume_is_exact_with_ema_teacher_kl_anchor_and_schedule(tmp_path, tiny_cache):
    from opcod_core.controls import ControlBatch, ScriptedControls

    cfg = preset("tiny", {"schedule": {"rounds": 2, "steps_per_direction": 2}, "teacher": {"ema_rate": 0.3},
                          "loss": {"kl_anchor": 0.2},
                          "optim": {"warmup_steps": 1, "schedule": "cosine", "min_lr_ratio": 0.1}})
    _, full_obs, full = _run(cfg, tmp_path / "full", tiny_cache)
    steps = full_obs.dicts("step")
    for s in steps:
        assert {"train/lr", "train/weight_l2", "loss/kl_anchor"} <= set(s["metrics"])
    assert len({s["metrics"]["train/lr"] for s in steps}) > 1   # the schedule moved
    pause = ScriptedControls({5: ControlBatch(action="pause")})
    _, obs1, res1 = _run(cfg, tmp_path / "cut", tiny_cache, controls=pause)
    assert res1.status == "paused"
    _, obs2, res2 = _run(cfg, tmp_path / "cut", tiny_cache, resume=True)
    assert res2.status == "finished" and res2.summary == full.summary
    assert _comparable(obs1.dicts() + obs2.dicts()) == _comparable(full_obs.dicts())


@pytest.mark.slow
def test_one_way_teacher_stays_the_peers_initial_weights(tmp_path, tiny_cache):
    from safetensors.torch import load_file

    cfg = preset("tiny", {"algorithm": "one_way", "schedule": {"rounds": 1, "steps_per_direction": 2},
                          "students": [{"model": "tiny:llama"}, {"model": "tiny:llama"}]})
    tr, obs, res = _run(cfg, tmp_path / "ow", tiny_cache)
    assert res.status == "finished"
    assert {e["context_used"] for e in obs.dicts("exchange")} == {"peer"}
    root = tmp_path / "ow" / "checkpoints"
    first = sorted(root.glob("task-000001-*"))[0]          # after the initial evaluation, before any step
    last = root / (root / "LATEST").read_text().strip()
    for name, rt in tr.students.items():
        initial = load_file(str(first / name / "model" / "model.safetensors"))
        frozen = load_file(str(last / name / "reference.safetensors"))
        teacher = rt.reference.tensors
        assert set(teacher) <= set(initial)
        assert all(torch.equal(teacher[n], initial[n]) and torch.equal(frozen[n], initial[n]) for n in teacher)
        live = dict(rt.model.named_parameters())
        assert any(not torch.equal(live[n].detach(), initial[n]) for n in teacher), f"{name} did not train"
