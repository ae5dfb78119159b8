"""The end-of-sequence token is scored: a rollout that ended with EOS has exactly one more scored
position (the decision to stop) in every loss, and nothing else changes.

Real tiny models on the tiny preset. Every comparison holds by construction: the same config with
``rollout.score_eos`` on and off draws the same rollouts in one process (sampling does not depend on
the switch), and the divergence at the EOS position is recomputed independently from the two
next-token distributions at that position under the weights the step scored with.
"""

from __future__ import annotations

import copy

import pytest
import torch

from opcod_core import losses
from opcod_core.config import preset
from opcod_core.observer import CollectingObserver
from opcod_core.prompts import compose_teacher_inputs, rollout_messages, teacher_messages
from opcod_core.trainer import Trainer

pytestmark = pytest.mark.slow

TOL = 1e-4


def _config(score_eos: bool = True, **over):
    return preset("tiny", {"schedule": {"rounds": 1, "steps_per_direction": 1}, "gating": {"mode": "always"},
                           "rollout": {"score_eos": score_eos}, **over})


def _one_step(cfg, tmp_path, cache, out: str):
    """Trainer after the gate and the first step of direction 1, with copies of both students'
    weights as they were when the step scored its rollouts."""
    obs = CollectingObserver()
    tr = Trainer(cfg, tmp_path / out, observer=obs, cache_dir=cache)
    tr.task_gate(1)
    before = {n: copy.deepcopy(rt.model).eval() for n, rt in tr.students.items()}
    tr.task_step(1, 1, 0)
    return tr, obs, before


def _item(tr, e):
    return tr.items_by_id[e["prompt_id"]]


def _student_prefix(tr, e):
    it = _item(tr, e)
    return tr.students[e["tutee"]].render(rollout_messages(it.question, list(it.labels), list(it.choices),
                                                           it.answer_type))


def _teacher_prefix(tr, e, feedback):
    it = _item(tr, e)
    s, f, _ = compose_teacher_inputs(tr.config.context_mode, e["s_text"], feedback)
    return tr.students[e["tutee"]].render(teacher_messages(it.question, list(it.labels), list(it.choices),
                                                           it.answer_type, solution=s, feedback=f))


@torch.no_grad()
def _next_logits(model, prefix, ids):
    """Logits of the next token after ``prefix + ids`` (one unpadded forward pass)."""
    return model(torch.tensor([list(prefix) + list(ids)])).logits[0, -1].float()


def _divergence(cfg, s_V, t_V) -> float:
    lc = cfg.loss
    d = losses.per_token_divergence(s_V[None, None], t_V[None, None], torch.ones(1, 1, dtype=torch.bool),
                                    kind=lc.divergence, beta=lc.beta, topk=lc.topk, chunk_size=lc.chunk_size)
    return float(d[0, 0])


def test_eos_is_one_more_scored_position_and_the_step_reports_finish_reasons(tmp_path, tiny_cache):
    tr_on, obs_on, before = _one_step(_config(True), tmp_path, tiny_cache, "on")
    tr_off, obs_off, _ = _one_step(_config(False), tmp_path, tiny_cache, "off")
    tutee = tr_on.students["chem"]
    eos_ids = tutee.backend.eos_token_ids
    on, off = obs_on.dicts("exchange"), obs_off.dicts("exchange")
    assert [e["key"] for e in on] == [e["key"] for e in off] and on
    ended = 0
    for a, b in zip(on, off, strict=True):
        assert (a["rollout_text"], a["finish_reason"], a["answer"], a["context_used"]) == (
            b["rollout_text"], b["finish_reason"], b["answer"], b["context_used"])
        assert a["finish_reason"] in ("eos", "stop", "length")
        for e in (a, b):
            n = len(e["token_ids"])
            assert len(e["divergence"]) == len(e["tokens"]) == len(e["student_logprob"]) == n
            assert len(e["divergence_s_only"]) == n
            if not e["skipped"]:
                assert e["loss"] == pytest.approx(sum(e["divergence"]) / n, abs=1e-6)
        is_eos = a["finish_reason"] == "eos"
        # score_eos on: the EOS is the last token iff the rollout ended with it, and never in the text
        assert is_eos == (a["token_ids"][-1] in eos_ids)
        assert not set(a["token_ids"][:-1]) & eos_ids and not set(b["token_ids"]) & eos_ids
        if is_eos:
            ended += 1
            eos = a["token_ids"][-1]
            assert a["token_ids"] == b["token_ids"] + [eos]          # exactly one more scored position
            assert a["tokens"] == b["tokens"] + [tutee.tokenizer.decode([eos])]
            assert tutee.tokenizer.decode([eos]) not in a["rollout_text"]
        else:
            assert a["token_ids"] == b["token_ids"]
        # every other position is scored exactly as without the EOS (up to batching's float rounding)
        m = len(b["token_ids"])
        for key in ("divergence", "divergence_s_only", "student_logprob"):
            assert a[key][:m] == pytest.approx(b[key], abs=TOL), key
    assert ended, "the warmed-up tiny students end their answers with EOS"

    # the divergence at the EOS position is the divergence of the stop decision
    model = before["chem"]
    checked = 0
    for e in on:
        if e["finish_reason"] != "eos" or e["skipped"]:
            continue
        body, eos = e["token_ids"][:-1], e["token_ids"][-1]
        s_V = _next_logits(model, _student_prefix(tr_on, e), body)
        t_V = _next_logits(model, _teacher_prefix(tr_on, e, e["feedback_used"]), body)
        assert e["divergence"][-1] == pytest.approx(_divergence(tr_on.config, s_V, t_V), abs=TOL)
        assert e["student_logprob"][-1] == pytest.approx(float(torch.log_softmax(s_V, -1)[eos]), abs=TOL)
        if e["context_used"] == "s+f":
            s_only_V = _next_logits(model, _teacher_prefix(tr_on, e, None), body)
            assert e["divergence_s_only"][-1] == pytest.approx(_divergence(tr_on.config, s_V, s_only_V), abs=TOL)
        checked += 1
    assert checked, "some rollout that ended with EOS had a teacher context"

    # step metrics: finish-reason shares (summing to 1), parse failures, mean scored length
    for obs, exchanges in ((obs_on, on), (obs_off, off)):
        (step,) = obs.dicts("step")
        m, n = step["metrics"], len(exchanges)
        shares = [m[f"rollout/finish_{f}"] for f in ("eos", "stop", "length")]
        assert sum(shares) == pytest.approx(1.0) and all(0 <= x <= 1 for x in shares)
        for f, share in zip(("eos", "stop", "length"), shares, strict=True):
            assert share == pytest.approx(sum(e["finish_reason"] == f for e in exchanges) / n)
        assert m["rollout/parse_failure"] == pytest.approx(sum(e["answer"] is None for e in exchanges) / n)
        assert m["rollout/mean_length"] == pytest.approx(sum(len(e["token_ids"]) for e in exchanges) / n)
    on_len, off_len = (obs.dicts("step")[0]["metrics"]["rollout/mean_length"] for obs in (obs_on, obs_off))
    assert on_len == pytest.approx(off_len + ended / len(on))


def test_baselines_score_the_stop_decision(tmp_path, tiny_cache):
    same_tokenizer = [{"model": "tiny:llama"}, {"model": "tiny:llama"}]
    # GRPO: the log-probability of the EOS is in the policy gradient
    tr, obs, before = _one_step(_config(algorithm="grpo", students=same_tokenizer), tmp_path, tiny_cache, "grpo")
    checked = 0
    for e in obs.dicts("exchange"):
        assert len(e["student_logprob"]) == len(e["token_ids"])
        if e["finish_reason"] == "eos":
            s_V = _next_logits(before["chem"], _student_prefix(tr, e), e["token_ids"][:-1])
            assert e["student_logprob"][-1] == pytest.approx(
                float(torch.log_softmax(s_V, -1)[e["token_ids"][-1]]), abs=TOL)
            checked += 1
    assert checked
    # one-way: the peer teacher scores the EOS position too
    tr, obs, before = _one_step(_config(algorithm="one_way", students=same_tokenizer), tmp_path, tiny_cache, "ow")
    checked = 0
    for e in obs.dicts("exchange"):
        assert len(e["divergence"]) == len(e["token_ids"])
        if e["finish_reason"] == "eos":
            prefix, body = _student_prefix(tr, e), e["token_ids"][:-1]
            s_V = _next_logits(before["chem"], prefix, body)
            t_V = _next_logits(before["phys"], prefix, body)
            assert e["divergence"][-1] == pytest.approx(_divergence(tr.config, s_V, t_V), abs=TOL)
            checked += 1
    assert checked
