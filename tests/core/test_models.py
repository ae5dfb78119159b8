"""opcod_core.models: tiny tokenizer and models, prompt rendering, save/load, token_logits alignment."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub

import copy
import itertools

import pytest
import torch

from opcod_core.models import (
    SPECIAL_TOKENS,
    build_tiny_model,
    build_tiny_tokenizer,
    count_parameters,
    load_causal_lm,
    render_prompt,
    save_model,
    sequence_logprobs,
    token_logits,
)


def science_corpus() -> list[str]:
    quantities = ["density", "pressure", "temperature", "volume", "entropy", "molar mass", "charge"]
    things = ["water", "an ideal gas", "copper wire", "a sodium chloride solution", "the electron", "quartz"]
    changes = ["is heated", "is compressed", "doubles in size", "is cooled to 250 K", "absorbs a photon"]
    sentences = [f"What happens to the {q} of {t} when it {c}?"
                 for q, t, c in itertools.product(quantities, things, changes)]
    sentences += [
        "Answer: B. The pressure rises because the molecules collide more often.",
        "The answer is (C): energy is conserved in an isolated system.",
        "Newton's second law states F = m * a, where a is acceleration in m/s^2.",
        "A catalyst lowers the activation energy of a reaction without being consumed.",
        "<concept>entropy</concept> Check how disorder changes when the gas expands.",
        "pH = -log10[H+]; a solution with pH 3 is acidic.",
        "Silicon is a semiconductor; doping with boron creates p-type material.",
    ] * 5
    return sentences


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer(science_corpus(), vocab_size=512)


@pytest.fixture(scope="module")
def llama(tok):
    return build_tiny_model(tok, arch="llama", seed=0)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is entropy?"}]


# ------------------------------------------------------------------ tokenizer

def test_special_tokens_and_vocab(tok):
    assert tok.convert_ids_to_tokens(list(range(6))) == list(SPECIAL_TOKENS)
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<|pad|>", "<|bos|>", "<|eos|>")
    assert 262 < len(tok) <= 512
    assert tok.chat_template


@pytest.mark.parametrize("text", [
    "What happens to the density of water when it is heated?",
    "  leading spaces, trailing\t\n",
    "Unicode: Δᵢ = Σ_d (s*_d − sⁱ_d) / s*_d, 25 °C, émigré, 🧪",
    "Answer: (B)\n\nThe answer is C.",
    "",
])
def test_tokenizer_round_trip_is_exact(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # encoding never adds BOS/EOS on its own
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids


def test_tokenizer_is_deterministic(tok):
    again = build_tiny_tokenizer(science_corpus(), vocab_size=512)
    assert again.get_vocab() == tok.get_vocab()
    s = "The molar mass of copper wire doubles in size."
    assert again.encode(s) == tok.encode(s)


# ------------------------------------------------------------------ prompts

def test_render_prompt_with_chat_template_and_prefill(tok):
    ids = render_prompt(tok, MESSAGES, prefill="<concept>")
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert tok.decode(ids) == ("<|bos|><|system|>Be brief.<|eos|><|user|>What is entropy?<|eos|>"
                               "<|assistant|><concept>")
    # prefill is a pure continuation of the generation prompt here
    no_prefill = render_prompt(tok, MESSAGES)
    assert tok.decode(no_prefill).endswith("<|assistant|>")
    assert ids[: len(no_prefill)] == no_prefill
    no_gen = render_prompt(tok, MESSAGES, add_generation_prompt=False)
    assert tok.decode(no_gen).endswith("What is entropy?<|eos|>")


def test_render_prompt_fallback_without_template(tok):
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    ids = render_prompt(plain, MESSAGES, prefill="Answer:")
    assert ids[0] == plain.bos_token_id and ids.count(plain.bos_token_id) == 1
    assert plain.decode(ids[1:]) == "System: Be brief.\nUser: What is entropy?\nAssistant: Answer:"


# ------------------------------------------------------------------ models

def test_tiny_model_is_deterministic_and_leaves_global_rng_alone(tok, llama):
    state = torch.get_rng_state()
    again = build_tiny_model(tok, arch="llama", seed=0)
    other = build_tiny_model(tok, arch="llama", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    sd, sd_again, sd_other = llama.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd_again[k]) for k in sd)
    assert any(not torch.equal(sd[k], sd_other[k]) for k in sd)
    assert 100_000 < count_parameters(llama) < 200_000
    bigger = build_tiny_model(tok, arch="qwen2", hidden=128, layers=4, intermediate=256)
    assert 500_000 < count_parameters(bigger) < 1_500_000


def test_unknown_arch_is_rejected(tok):
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model(tok, arch="gpt9")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_save_load_round_trip_gives_identical_logits(tok, tmp_path, arch):
    model = build_tiny_model(tok, arch=arch, seed=3)
    save_model(model, tok, tmp_path / "m")
    loaded, tok2 = load_causal_lm(tmp_path / "m")
    ids = render_prompt(tok, MESSAGES, prefill="The answer")
    assert render_prompt(tok2, MESSAGES, prefill="The answer") == ids
    # the tokenizer comes back exactly as saved (no model-family tokenizer rebuilt around it)
    assert len(tok2) == len(tok) == loaded.config.vocab_size
    assert tok2.get_vocab() == tok.get_vocab()
    assert tok2.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert tok2.all_special_tokens == tok.all_special_tokens
    assert tok2.decode(ids) == tok.decode(ids)
    assert type(loaded).__name__ == type(model).__name__
    assert not loaded.training
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_load_sets_missing_pad_token_to_eos(tok, llama, tmp_path):
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    save_model(llama, no_pad, tmp_path / "m")
    _, loaded_tok = load_causal_lm(tmp_path / "m")
    assert loaded_tok.pad_token_id == loaded_tok.eos_token_id == tok.eos_token_id


# ------------------------------------------------------------------ token_logits

@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_token_logits_match_unpadded_forward(tok, arch):
    model = build_tiny_model(tok, arch=arch, seed=5)
    g = torch.Generator().manual_seed(0)
    V = len(tok)
    prefixes = [torch.randint(6, V, (n,), generator=g).tolist() for n in (3, 17, 1, 9)]
    conts = [torch.randint(6, V, (n,), generator=g).tolist() for n in (5, 2, 8, 0)]
    logits_BTV, mask_BT = token_logits(model, prefixes, conts)
    assert logits_BTV.shape == (4, 8, V)
    assert mask_BT.tolist() == [[t < n for t in range(8)] for n in (5, 2, 8, 0)]
    assert torch.all(logits_BTV[~mask_BT] == 0)
    with torch.no_grad():
        for b, (p, c) in enumerate(zip(prefixes, conts, strict=True)):
            if not c:
                continue
            full = model(torch.tensor([p + c])).logits[0]
            # position len(p)-1+t predicts continuation token t
            expected = full[len(p) - 1: len(p) - 1 + len(c)]
            torch.testing.assert_close(logits_BTV[b, : len(c)].detach(), expected, atol=1e-5, rtol=0)


def test_token_logits_keep_gradients_and_sequence_logprobs(tok, llama):
    prefixes, conts = [[1, 7, 8], [1, 9]], [[10, 11], [12, 13, 14]]
    logits_BTV, mask_BT = token_logits(llama, prefixes, conts)
    logits_BTV.sum().backward()
    assert llama.lm_head.weight.grad is not None
    llama.zero_grad(set_to_none=True)
    with torch.no_grad():
        lp_BT, mask2_BT = sequence_logprobs(llama, prefixes, conts, temperature=0.5)
        assert torch.equal(mask_BT, mask2_BT)
        full = llama(torch.tensor([[1, 9, 12, 13, 14]])).logits[0]
        expected = torch.log_softmax(full[1:4] / 0.5, -1)[torch.arange(3), torch.tensor([12, 13, 14])]
    torch.testing.assert_close(lp_BT[1], expected, atol=1e-5, rtol=0)
    assert lp_BT[0, 2] == 0


def test_token_logits_rejects_empty_prefix(llama):
    with pytest.raises(ValueError):
        token_logits(llama, [[]], [[5]])
