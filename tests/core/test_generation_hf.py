"""opcod_core.generation.hf: batched sampling with exact logprobs, seeds, greedy, stops, EOS."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub

import itertools

import pytest
import torch

from opcod_core.generation import Completion, SamplingParams
from opcod_core.generation.hf import HFBackend
from opcod_core.models import build_tiny_model, build_tiny_tokenizer, render_prompt


def science_corpus() -> list[str]:
    subjects = ["The density of water", "The pressure of an ideal gas", "The resistance of copper wire",
                "The pH of vinegar", "The half-life of carbon-14", "The boiling point of ethanol"]
    verbs = ["increases", "decreases", "stays constant", "doubles"]
    conditions = ["when it is heated.", "under high pressure.", "at 300 K.", "if the volume is halved.",
                  "in a magnetic field.", "after a catalyst is added."]
    sentences = [f"{s} {v} {c}" for s, v, c in itertools.product(subjects, verbs, conditions)]
    sentences += ["Answer: A", "Answer: B", "Answer: C", "Answer: D",
                  "<concept>pressure</concept> Think about collisions per second."] * 10
    return sentences


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(science_corpus(), vocab_size=512)


@pytest.fixture(scope="module")
def model(tok):
    return build_tiny_model(tok, arch="llama", seed=0)


@pytest.fixture(scope="module")
def prompts(tok):
    questions = ["What is pressure?", "Why does the density of water change when it is heated at 300 K?",
                 "pH?"]
    return [render_prompt(tok, [{"role": "user", "content": q}], prefill="Answer:") for q in questions]


def _fresh_logprobs(model, prompt, completion, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(completion))
    return torch.log_softmax(logits[pos] / temperature, -1)[torch.arange(len(completion)), torch.tensor(completion)]


def test_n_per_prompt_shape_and_fields(model, tok, prompts):
    backend = HFBackend(model, tok, batch_size=4)  # 3 prompts x 3 samples -> chunks of 4, 4, 1
    out = backend.generate(prompts, SamplingParams(n=3, max_new_tokens=6, seed=1))
    assert len(out) == 3 and all(len(row) == 3 for row in out)
    for i, row in enumerate(out):
        for j, c in enumerate(row):
            assert isinstance(c, Completion)
            assert (c.meta["prompt_index"], c.meta["sample_index"]) == (i, j)
            assert len(c.token_ids) == len(c.logprobs) <= 6
            assert c.finish_reason in {"length", "eos"}
            ended = c.finish_reason == "eos"
            assert ended == (bool(c.token_ids) and c.token_ids[-1] in backend.eos_token_ids)
            body = c.token_ids[:-1] if ended else c.token_ids
            assert c.text == tok.decode(body)
            assert tok.eos_token_id not in body and tok.pad_token_id not in body
            assert all(lp <= 0 for lp in c.logprobs)


def test_same_seed_same_samples_different_seed_different(model, tok, prompts):
    backend = HFBackend(model, tok)
    p = SamplingParams(n=2, max_new_tokens=8, seed=7)
    a, b = backend.generate(prompts, p), backend.generate(prompts, p)
    c = backend.generate(prompts, SamplingParams(n=2, max_new_tokens=8, seed=8))
    ids = lambda out: [[x.token_ids for x in row] for row in out]  # noqa: E731
    assert ids(a) == ids(b)
    assert [[x.logprobs for x in row] for row in a] == [[x.logprobs for x in row] for row in b]
    assert ids(a) != ids(c)
    # the n samples of one prompt differ from each other
    assert a[1][0].token_ids != a[1][1].token_ids


def test_global_rng_untouched_and_train_mode_restored(model, tok, prompts):
    seen_training = []
    handle = model.register_forward_pre_hook(lambda m, args: seen_training.append(m.training))
    model.train()
    try:
        state = torch.get_rng_state()
        backend = HFBackend(model, tok)
        backend.generate(prompts, SamplingParams(n=2, max_new_tokens=4, seed=3))
        backend.generate(prompts, SamplingParams(n=1, max_new_tokens=4, seed=None))
        assert torch.equal(torch.get_rng_state(), state)
        assert seen_training and not any(seen_training)
        assert model.training
    finally:
        handle.remove()
        model.eval()


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9), (0.0, 1.0)])
def test_logprobs_match_fresh_forward_pass_across_padding(model, tok, prompts, temperature, top_p):
    backend = HFBackend(model, tok, batch_size=64)  # all rows, of different prompt lengths, in one batch
    out = backend.generate(prompts, SamplingParams(n=2, temperature=temperature, top_p=top_p,
                                                   max_new_tokens=12, seed=11))
    assert len({len(p) for p in prompts}) == 3
    scale = temperature if temperature > 0 else 1.0  # greedy reports untempered logprobs
    for prompt, row in zip(prompts, out, strict=True):
        for c in row:
            assert c.token_ids
            expected = _fresh_logprobs(model, prompt, c.token_ids, scale)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=0)


def test_greedy_is_deterministic_and_follows_argmax(model, tok, prompts):
    backend = HFBackend(model, tok)
    p = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    a, b = backend.generate(prompts, p), backend.generate(prompts, SamplingParams(n=1, temperature=0.0,
                                                                                   max_new_tokens=10, seed=99))
    for prompt, row_a, row_b in zip(prompts, a, b, strict=True):
        assert row_a[0].token_ids == row_a[1].token_ids == row_b[0].token_ids
        # each greedy token is the argmax of an unpadded forward pass over prompt + tokens so far
        seq = list(prompt)
        with torch.no_grad():
            for t in row_a[0].token_ids:
                assert t == int(model(torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(t)


def _first_new_token(ref: list[int]) -> int:
    """Index k >= 1 of a token that ``ref`` emits at step k and not before."""
    return next(i for i in range(1, len(ref)) if ref[i] not in ref[:i])


def test_eos_ends_a_row_and_is_its_last_token_but_not_in_the_text(model, tok, prompts):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    free = HFBackend(model, tok).generate(prompts[:1], greedy)[0][0]
    ref = free.token_ids
    # declare as EOS a token greedy emits at step k (k >= 1) and not before: the row must end there,
    # keeping that token (and its logprob) as its last scored position, out of the text
    k = _first_new_token(ref)
    eos = ref[k]
    c = HFBackend(model, tok, eos_token_ids=[eos]).generate(prompts[:1], greedy)[0][0]
    assert c.finish_reason == "eos"
    assert c.token_ids == ref[: k + 1] and c.token_ids[-1] == eos
    assert c.logprobs == pytest.approx(free.logprobs[: k + 1], abs=1e-6)
    assert c.text == tok.decode(ref[:k])
    expected = _fresh_logprobs(model, prompts[0], c.token_ids, 1.0)
    torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=0)


def test_eos_at_the_length_limit_is_an_eos_finish(model, tok, prompts):
    # an EOS sampled as the last allowed token counts towards max_new_tokens and ends the row as "eos"
    ref = HFBackend(model, tok).generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=10))[0][0].token_ids
    k = _first_new_token(ref)
    backend = HFBackend(model, tok, eos_token_ids=[ref[k]])
    at_limit = backend.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=k + 1))[0][0]
    assert at_limit.finish_reason == "eos" and at_limit.token_ids == ref[: k + 1]
    cut = backend.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=k))[0][0]
    assert cut.finish_reason == "length" and cut.token_ids == ref[:k] and cut.text == tok.decode(ref[:k])


def test_sampled_rows_ending_with_eos_keep_it_others_do_not(model, tok, prompts):
    # The same seed and batch draw the same random stream whatever the EOS set, so declaring as EOS a
    # token that sample (0, 0) draws at step k makes that row end there by construction.
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=21)
    free = HFBackend(model, tok).generate(prompts, params)
    k = _first_new_token(free[0][0].token_ids)
    eos = free[0][0].token_ids[k]
    backend = HFBackend(model, tok, eos_token_ids=[eos])
    out = backend.generate(prompts, params)
    assert out[0][0].finish_reason == "eos" and out[0][0].token_ids == free[0][0].token_ids[: k + 1]
    for row_free, row in zip(free, out, strict=True):
        for f, c in zip(row_free, row, strict=True):
            ended = c.finish_reason == "eos"
            assert ended == (c.token_ids[-1] in backend.eos_token_ids)
            body = c.token_ids[:-1] if ended else c.token_ids
            assert not set(body) & backend.eos_token_ids
            assert len(c.logprobs) == len(c.token_ids)
            assert c.token_ids == f.token_ids[: len(c.token_ids)]
            assert c.text == tok.decode(body)


def test_stop_strings_keep_the_completing_token(model, tok, prompts):
    backend = HFBackend(model, tok)
    base = SamplingParams(n=3, max_new_tokens=16, seed=5)
    free = backend.generate(prompts, base)
    target = free[1][2]
    assert len(target.token_ids) >= 8
    # a stop string spanning a token boundary, taken from the middle of a sampled completion
    head, tail = tok.decode(target.token_ids[:5]), tok.decode(target.token_ids[5:7])
    stop = head[-2:] + tail[:2] if len(head) >= 2 and len(tail) >= 2 else tok.decode(target.token_ids[4:7])
    never = "\u2603 never produced \u2603"
    stopped = backend.generate(prompts, SamplingParams(n=3, max_new_tokens=16, seed=5, stop=(never, stop)))
    for row_free, row_stop in zip(free, stopped, strict=True):
        for f, s in zip(row_free, row_stop, strict=True):
            # expected: the shortest prefix whose decoded text contains the stop string (an ending EOS
            # is not text: stops are never matched on it)
            body = f.token_ids[:-1] if f.finish_reason == "eos" else f.token_ids
            k = next((i for i in range(1, len(body) + 1) if stop in tok.decode(body[:i])), None)
            if k is None:
                assert s.token_ids == f.token_ids and s.finish_reason == f.finish_reason
            else:
                assert s.token_ids == f.token_ids[:k] and s.logprobs == f.logprobs[:k]
                assert s.finish_reason == "stop" and s.meta["stop"] == stop
                assert s.text[: s.meta["stop_end"]].endswith(stop)
    assert stopped[1][2].finish_reason == "stop"


def test_max_new_tokens_zero_and_bad_params(model, tok, prompts):
    backend = HFBackend(model, tok)
    out = backend.generate(prompts, SamplingParams(n=2, max_new_tokens=0))
    assert all(c.token_ids == [] and c.finish_reason == "length" for row in out for c in row)
    with pytest.raises(ValueError):
        backend.generate([[]], SamplingParams())
    with pytest.raises(ValueError):
        backend.generate(prompts, SamplingParams(top_p=0.0))


def test_sync_weights(model, tok, prompts):
    served = build_tiny_model(tok, arch="llama", seed=42)
    backend = HFBackend(served, tok)
    backend.sync_weights(served)  # same module: no-op
    assert backend.model is served
    p = SamplingParams(n=2, max_new_tokens=6, seed=2)
    backend.sync_weights(model)  # another module: weights copied into the served one
    assert backend.model is served
    assert all(torch.equal(a, b) for a, b in zip(served.state_dict().values(), model.state_dict().values()))
    assert [[c.token_ids for c in row] for row in backend.generate(prompts, p)] == \
        [[c.token_ids for c in row] for row in HFBackend(model, tok).generate(prompts, p)]


def test_tiny_top_p_keeps_only_the_most_likely_token(model, tok, prompts):
    backend = HFBackend(model, tok, batch_size=2)
    greedy = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=8))
    nucleus = backend.generate(prompts, SamplingParams(n=2, temperature=1.0, top_p=1e-6, max_new_tokens=8, seed=4))
    for g_row, n_row in zip(greedy, nucleus, strict=True):
        assert all(c.token_ids == g_row[0].token_ids for c in n_row)


def test_inverse_cdf_sampler_draws_the_distribution_and_never_a_zero_probability_token():
    """The sampler against its distribution: 40,000 draws per row from a fixed generator (a pure function
    of the seed on any CPU), chi-square far inside the 1e-6 tail (20 degrees of freedom or fewer), and
    zero-probability entries (first, middle, last) never drawn."""
    from opcod_core.generation.hf import _inverse_cdf_sample

    gen = torch.Generator().manual_seed(11)
    probs = torch.tensor([[0.0, 0.5, 0.3, 0.0, 0.2, 0.0],
                          [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]])
    draws = torch.stack([_inverse_cdf_sample(probs, gen) for _ in range(40_000)])  # [N, 2]
    for row in range(2):
        counts = torch.bincount(draws[:, row], minlength=6).double()
        p = probs[row].double()
        assert torch.all(counts[p == 0] == 0)
        expected = 40_000 * p[p > 0]
        chi2 = float(((counts[p > 0] - expected) ** 2 / expected).sum())
        assert chi2 < 40.0, (row, counts.tolist())
