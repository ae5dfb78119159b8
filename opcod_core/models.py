"""Loading Hugging Face causal LMs, rendering prompts, building the tiny offline models, scoring.

Conventions used everywhere in the core:

* **Token ids are the contract.** Prompts are rendered once to token ids (:func:`render_prompt`);
  rollouts are token ids; the trainer scores exactly those ids under other prefixes with
  :func:`token_logits`. Text is never re-tokenised on the way, so the student's and the
  self-teacher's logits line up token for token.
* **BOS.** :func:`render_prompt` never lets the tokenizer add special tokens on its own
  (``add_special_tokens=False``). With a chat template, whatever BOS the template writes (most
  templates write ``{{ bos_token }}`` themselves) is what the model sees, exactly once. Without a
  chat template, the plain fallback format is prefixed with the tokenizer's ``bos_token_id`` when it
  has one, and with nothing otherwise. No EOS is ever appended to a prompt.
* **Padding.** Nothing assumes a padding side. :func:`token_logits` right-pads full sequences
  itself (right padding leaves the real tokens' positions and causal attention untouched, so rows
  are exact); the generation backend left-pads with explicit ``position_ids``. A missing pad token
  is set to EOS; pad positions are always masked, so the pad id's value never matters.
* No environment variables are read here; whether the hub is reachable is the caller's business
  (``ref`` may be a local directory, which never touches the network).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Sequence

import torch

_VERBATIM_KEY = "opcod_verbatim_tokenizer"
SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>")

# Chat template of the tiny tokenizer: <|bos|> then, per message, <|role|>content<|eos|>; the
# generation prompt is <|assistant|>. An assistant turn therefore ends with <|eos|>, which is what
# the generation backend stops on.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('tiny chat template: unknown role ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def _to_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def _ensure_pad_token(tokenizer, model=None) -> None:
    """Set the pad token to EOS when the tokenizer has none (pad positions are always masked)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        gen_cfg = getattr(model, "generation_config", None)
        if gen_cfg is not None and gen_cfg.pad_token_id is None:
            gen_cfg.pad_token_id = tokenizer.pad_token_id


def load_causal_lm(ref: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                   trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load any HF causal LM and its tokenizer by hub id or local directory path.

    Returns ``(model, tokenizer)``; the model is on ``device`` in ``dtype`` and in eval mode. A missing
    pad token is set to EOS. Nothing here forces offline mode: a hub id may download, a local
    directory never does.
    """
    from transformers import AutoModelForCausalLM

    ref = str(ref)
    tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(ref, dtype=_to_dtype(dtype), trust_remote_code=trust_remote_code)
    model.to(device)
    model.eval()
    _ensure_pad_token(tokenizer, model)
    return model, tokenizer


def load_tokenizer(ref: str | Path, trust_remote_code: bool = False):
    """The tokenizer of a hub id or local directory. Our own tokenizers load exactly as saved:
    AutoTokenizer would rebuild some model types' tokenizers from vocab + merges with that family's
    rules (e.g. qwen2 -> Qwen2Tokenizer, which adds an <|endoftext|> unk token beyond the model's
    vocabulary)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    ref = str(ref)
    if _is_verbatim_tokenizer_dir(ref):
        return PreTrainedTokenizerFast.from_pretrained(ref)
    return AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)


def _is_verbatim_tokenizer_dir(ref: str) -> bool:
    config_path = Path(ref) / "tokenizer_config.json"
    if not (config_path.is_file() and (Path(ref) / "tokenizer.json").is_file()):
        return False
    try:
        return bool(json.loads(config_path.read_text(encoding="utf-8")).get(_VERBATIM_KEY, False))
    except (OSError, ValueError):
        return False


def _fallback_text(messages: Sequence[dict], add_generation_prompt: bool) -> str:
    parts = []
    for message in messages:
        role = str(message["role"])
        parts.append(f"{role[:1].upper()}{role[1:]}: {message['content']}\n")
    if add_generation_prompt:
        parts.append("Assistant: ")
    return "".join(parts)


def render_prompt(tokenizer, messages: list[dict], add_generation_prompt: bool = True, prefill: str = "",
                  chat_template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Render a chat to token ids.

    With a chat template, ``tokenizer.apply_chat_template`` renders the text; otherwise a plain format
    is used: ``"System: ...\\nUser: ...\\nAssistant: "``. ``prefill`` is appended verbatim after the
    generation prompt (a prefilled assistant turn the model continues). The whole text is tokenised
    in one piece with ``add_special_tokens=False``; BOS comes from the template (or, without a
    template, ``bos_token_id`` is prepended when the tokenizer has one). See the module docstring.

    ``chat_template_kwargs`` are extra variables for the template (a student's
    ``chat_template_kwargs``, e.g. ``{"enable_thinking": False}`` for Qwen3's thinking switch); a
    template ignores variables it does not use, and the plain format ignores them all.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
            **(chat_template_kwargs or {}))
        prefix: list[int] = []
    else:
        text = _fallback_text(messages, add_generation_prompt)
        prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    text = text + prefill
    return prefix + list(tokenizer.encode(text, add_special_tokens=False))


# --------------------------------------------------------------------------- tiny models


def build_tiny_tokenizer(corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE trained offline on ``corpus`` (deterministic), wrapped as PreTrainedTokenizerFast.

    Special tokens (ids 0..5): ``<|pad|>``, ``<|bos|>``, ``<|eos|>``, ``<|user|>``, ``<|assistant|>``,
    ``<|system|>``. No post-processor: encoding never adds special tokens, BOS comes from the chat
    template (:data:`TINY_CHAT_TEMPLATE`). Byte-level, so ``decode(encode(text)) == text`` for any text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} for a byte-level BPE")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    pad, bos, eos, user, assistant, system = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=[user, assistant, system],
        clean_up_tokenization_spaces=False,
        model_max_length=100_000,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    # Saved into tokenizer_config.json: load_causal_lm then reloads this tokenizer verbatim.
    tokenizer.init_kwargs[_VERBATIM_KEY] = True
    return tokenizer


def build_tiny_model(tokenizer, arch: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4,
                     intermediate: int = 128, max_positions: int = 512, seed: int = 0):
    """A randomly initialised tiny causal LM (``"llama"`` or ``"qwen2"``), deterministic for ``seed``.

    The global torch RNG is left untouched (initialisation runs inside ``torch.random.fork_rng``).
    Embeddings are untied. Parameter counts at vocab 512: the defaults (64/2/4/128) give ~0.13M;
    hidden=128, layers=4, intermediate=256 gives ~0.74M.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
    )
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen2":
        config = Qwen2Config(**common, use_sliding_window=False)
    else:
        raise ValueError(f"unknown tiny arch {arch!r}; expected 'llama' or 'qwen2'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


def save_model(model, tokenizer, path: str | Path) -> Path:
    """``save_pretrained`` model and tokenizer into ``path`` (reload with :func:`load_causal_lm`)."""
    from transformers.utils import logging as hf_logging

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar per checkpoint would drown the run's own progress
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return path


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- scoring


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def token_logits(model, prefix_ids_list: Sequence[Sequence[int]],
                 continuation_ids_list: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that predict each continuation token, under each row's own prefix.

    Row b is the sequence ``prefix_b + continuation_b``; output ``logits_BTV[b, t]`` is the model's
    logits at position ``len(prefix_b) + t - 1``, i.e. the distribution over continuation token t.
    ``mask_BT`` is True on real continuation tokens; logits past a row's continuation are zeros.
    Gradients flow (wrap in ``torch.no_grad`` for a teacher). Every prefix needs at least one token (the
    first continuation token must be predicted by something).

    Layout: every row is padded on the left so that all prefixes end at the same column, and on the
    right to the longest continuation, so the logits wanted are the same columns of every row and the
    model computes the output layer at exactly those (``logits_to_keep`` with their indices): no
    gather of a [B, T, V] tensor and no scatter in its backward. Position ids count from each row's first
    real token and the attention mask hides the padding, so each row equals its unpadded forward pass
    (up to the rounding of batched kernels).
    """
    prefixes = [list(map(int, p)) for p in prefix_ids_list]
    conts = [list(map(int, c)) for c in continuation_ids_list]
    if len(prefixes) != len(conts):
        raise ValueError(f"{len(prefixes)} prefixes but {len(conts)} continuations")
    if not prefixes:
        raise ValueError("token_logits needs at least one row")
    if any(len(p) == 0 for p in prefixes):
        raise ValueError("every prefix needs at least one token")
    device, B = _model_device(model), len(prefixes)
    P = max(len(p) for p in prefixes)
    T_cont = max(len(c) for c in conts)
    input_ids_BL, attention_mask_BL, position_ids_BL = _prefix_aligned(prefixes, conts, P, T_cont, model.config)
    cont_len_B = torch.tensor([len(c) for c in conts])
    mask_BT = (torch.arange(T_cont)[None, :] < cont_len_B[:, None]).to(device)
    columns_T = torch.arange(P - 1, P - 1 + T_cont, device=device)  # predicts continuation token t
    kwargs: dict[str, Any] = {}
    if _accepts_logits_to_keep(model) and T_cont > 0:
        kwargs["logits_to_keep"] = columns_T
    out = model(input_ids=input_ids_BL.to(device), attention_mask=attention_mask_BL.to(device),
                position_ids=position_ids_BL.to(device), use_cache=False, **kwargs)
    logits = out.logits
    if T_cont == 0:
        return logits.new_zeros((B, 0, logits.shape[-1])), mask_BT
    logits_BTV = logits if "logits_to_keep" in kwargs else logits[:, P - 1: P - 1 + T_cont]
    if not bool(mask_BT.all()):
        logits_BTV = logits_BTV.masked_fill(~mask_BT[:, :, None], 0.0)
    return logits_BTV, mask_BT


def _prefix_aligned(prefixes: list[list[int]], conts: list[list[int]], P: int, T_cont: int,
                    config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``pad * (P - len(prefix)) + prefix + continuation + pad * (T_cont - len(continuation))`` (the
    model's pad id, 0 if none), their attention mask and position ids (0 at the first real token)."""
    pad_id = getattr(config, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    B, L = len(prefixes), P + T_cont
    input_ids_BL = torch.full((B, L), pad_id, dtype=torch.long)
    attention_mask_BL = torch.zeros((B, L), dtype=torch.long)
    position_ids_BL = torch.zeros((B, L), dtype=torch.long)
    for b, (p, c) in enumerate(zip(prefixes, conts, strict=True)):
        left, seq = P - len(p), p + c
        input_ids_BL[b, left: left + len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask_BL[b, left: left + len(seq)] = 1
        position_ids_BL[b, left:] = torch.arange(L - left)
    return input_ids_BL, attention_mask_BL, position_ids_BL


def sequence_logprobs(model, prefix_ids_list: Sequence[Sequence[int]],
                      continuation_ids_list: Sequence[Sequence[int]],
                      temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of each continuation under its prefix: ``(logprobs_BT, mask_BT)``.

    ``log_softmax(logits / temperature)`` (float32) gathered at the continuation tokens; 0 on padding.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for log-probabilities")
    logits_BTV, mask_BT = token_logits(model, prefix_ids_list, continuation_ids_list)
    B, T = mask_BT.shape
    tokens_BT = torch.zeros((B, T), dtype=torch.long)
    for b, c in enumerate(continuation_ids_list):
        if len(c):
            tokens_BT[b, : len(c)] = torch.tensor(list(c), dtype=torch.long)
    tokens_BT = tokens_BT.to(logits_BTV.device)
    logprobs_BTV = torch.log_softmax(logits_BTV.float() / temperature, dim=-1)
    logprobs_BT = torch.gather(logprobs_BTV, 2, tokens_BT[:, :, None]).squeeze(-1)
    return logprobs_BT * mask_BT, mask_BT
