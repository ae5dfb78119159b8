"""The generation protocol every backend implements.

Prompts go in as token ids (the caller renders chat templates), so the trainer knows the exact
tokens of every rollout and can score them under other contexts without re-tokenising text:
that is what makes the teacher's logits line up with the tutee's rollout token for token.

End of sequence. A sample that ends by emitting an EOS token keeps that token: it is the last entry
of ``token_ids`` (with its log-probability last in ``logprobs``) and ``finish_reason`` is ``"eos"``,
while ``text`` never contains it. Every backend appends it (rather than the trainer after the fact)
because only the backend knows *which* EOS id was sampled (a model may have several) and with what
log-probability. The decision to stop is part of the policy, so the trainer scores that position
like any other (``rollout.score_eos``, on by default; the step drops it when off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1                      # samples per prompt
    temperature: float = 1.0        # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()      # generation of a sample ends after the first stop string
    seed: int | None = None         # same seed + same weights + same prompts -> same samples


@dataclass
class Completion:
    """One sample. Invariant: ``finish_reason == "eos"`` iff ``token_ids[-1]`` is the EOS token that
    ended the sample; ``text`` is the decoded ``token_ids`` without that final EOS."""

    token_ids: list[int]            # sampled tokens: stop string included, the ending EOS included, never pad
    text: str                       # decoded token_ids, without the ending EOS
    logprobs: list[float]           # log p(sampled token) under the sampling distribution (temperature applied)
    finish_reason: str = "length"   # "stop" (stop string), "eos" (EOS sampled, last of token_ids), or "length"
    meta: dict = field(default_factory=dict)


def check_request(prompts: Sequence[Sequence[int]], params: SamplingParams) -> None:
    """The argument checks every backend applies before generating (clear errors, same wording)."""
    if params.n < 1:
        raise ValueError("SamplingParams.n must be >= 1")
    if params.temperature < 0:
        raise ValueError("SamplingParams.temperature must be >= 0")
    if not 0 < params.top_p <= 1:
        raise ValueError("SamplingParams.top_p must be in (0, 1]")
    if params.max_new_tokens < 0:
        raise ValueError("SamplingParams.max_new_tokens must be >= 0")
    if any(s == "" for s in params.stop):
        raise ValueError("stop strings must be non-empty")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")


class GenerationBackend(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        """Returns, for each prompt, ``params.n`` completions."""
        ...

    def sync_weights(self, model) -> None:
        """Make the backend serve the weights of ``model`` (no-op when it shares the module); a
        backend may defer the transfer to its next ``generate`` but never generates from older weights."""
        ...

    def offload(self) -> None:
        """The student is about to train: free what generation holds that training could use
        (an engine's GPU memory); the next ``generate`` restores it. No-op where nothing is held."""
        ...
