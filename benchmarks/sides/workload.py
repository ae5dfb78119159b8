"""The work of one self-distillation step, defined once for every side of ``benchmarks/step_vs_trl.py``.

This module is imported by the project's side (``.venv``) and by TRL's (``.venv-trl``, where opcod_core is
not installed), so it needs only the standard library at import time (torch and transformers inside
functions).

The work (issue 16's measurement, kept so that figures stay comparable): a random Llama (hidden 256, 4
layers, 4 heads, intermediate 688, tied embeddings, fp32) at the tokenizer's vocabulary size; 4 prompts x 4
rollouts x 64 sampled tokens, EOS suppressed so every rollout has 64 tokens; the self-teacher is the same
live weights under no_grad with a privileged context after the prompt (TRL's default teacher template
``{prompt}\\n\\n{privileged_context}``, reproduced token for token on the project's side); the full-vocabulary
generalized JSD with beta 0.5, mean over a rollout's tokens, then over rollouts; AdamW at lr 1e-5, gradient
clipping at 1.0. TRL takes the 16 rows in one forward/backward pass (its batch per device); the project
takes them in micro-batches of ``StudentRuntime``'s ``micro_batch`` rows (8, what runs use) and accumulates the
gradient: the same tokens, FLOPs and update, each side as its users run it.

``useful_flops`` counts the matrix products this work needs, not what an implementation executes: the
attention and MLP projections of every token fed through the model, the attention scores and values at
each position's causal context, and the output layer only where a logit is used (completion positions in
the update, the last position per decode step in generation). Backward counts twice the forward. The
elementwise work of the loss (softmax, logs over the vocabulary) is not counted. Divided by the step's
time and by a measured fp32 GEMM rate on the same threads, it is the share of the hardware the step uses.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MODEL = {"hidden": 256, "layers": 4, "heads": 4, "intermediate": 688}
PROMPTS, ROLLOUTS, NEW_TOKENS = 4, 4, 64
PROMPT_TOKENS, CONTEXT_TOKENS = 67, 71
LR, MAX_GRAD_NORM, BETA = 1e-5, 1.0, 0.5
TEACHER_TEMPLATE = "{prompt}\n\n{privileged_context}"
QUICK = {"hidden": 64, "layers": 1, "heads": 2, "intermediate": 128}


@dataclass
class Workload:
    """What a side needs, written by the driver as ``workload.json`` in the work directory."""

    model_dir: str           # random Llama saved with save_pretrained
    tokenizer_dir: str       # tokenizer (with an EOS, for TRL; the project's side drops it)
    prompts: list[str]       # PROMPTS texts of about PROMPT_TOKENS tokens each
    contexts: list[str]      # the privileged context of each prompt
    rollouts: int = ROLLOUTS
    new_tokens: int = NEW_TOKENS
    steps: int = 3           # measured steps
    warmup_steps: int = 1    # steps run before measuring (allocations, first-call costs)
    threads: int = 2
    seed: int = 0
    micro_batch: int | None = None  # the project's rows per forward/backward (None: what runs use)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Workload":
        return cls(**json.loads(Path(path).read_text()))

    def teacher_texts(self) -> list[str]:
        return [TEACHER_TEMPLATE.format(prompt=p, privileged_context=c) for p, c in zip(self.prompts, self.contexts)]

    def token_ids(self, tok) -> tuple[list[list[int]], list[list[int]]]:
        """Each prompt's student prefix and teacher prefix as ``tok`` encodes them (both sides the same way)."""
        return [tok(p)["input_ids"] for p in self.prompts], [tok(t)["input_ids"] for t in self.teacher_texts()]

    def prefix_lengths(self, student_ids: list[list[int]], teacher_ids: list[list[int]]) -> dict[str, list[int]]:
        """Prefix lengths per trained row (each prompt's repeated for its rollouts): ``useful_flops``'s input."""
        return {"student_prefix": [len(ids) for ids in student_ids for _ in range(self.rollouts)],
                "teacher_prefix": [len(ids) for ids in teacher_ids for _ in range(self.rollouts)]}


def peak_rss_gb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


class StepClock:
    """Per-step wall times of a side, split into generation and the rest (the update)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._t0 = 0.0
        self._gen = 0.0

    def begin(self) -> None:
        self._t0, self._gen = time.perf_counter(), 0.0

    def add_generation(self, seconds: float) -> None:
        self._gen += seconds

    def end(self) -> None:
        total = time.perf_counter() - self._t0
        self.steps.append({"step_s": total, "generate_s": self._gen, "update_s": total - self._gen})


def report(side: str, clock: StepClock, warmup_steps: int, tokens: dict[str, list[int]], **extra) -> dict:
    """The JSON a side prints: its measured steps (after the warm-up ones) and the token counts it trained on."""
    measured = clock.steps[warmup_steps:]
    return {"side": side, "steps": measured, "tokens": tokens, "peak_rss_gb": round(peak_rss_gb(), 3), **extra}


def _body_flops_per_token(m: dict) -> int:
    h, inter = m["hidden"], m["intermediate"]
    return 2 * (4 * h * h + 3 * h * inter) * m["layers"]


def _attention_flops(m: dict, ctx: int) -> int:
    """QK^T and AV for one query position attending to ``ctx`` keys, all layers."""
    return 2 * 2 * m["hidden"] * ctx * m["layers"]


def forward_flops(m: dict, vocab: int, prefix: int, completion: int, logits_at: int) -> int:
    """One row: ``prefix + completion`` tokens through the model, logits at ``logits_at`` positions."""
    n = prefix + completion
    attn = sum(_attention_flops(m, t + 1) for t in range(n))
    return n * _body_flops_per_token(m) + attn + logits_at * 2 * m["hidden"] * vocab


def useful_flops(m: dict, vocab: int, student_prefix: list[int], teacher_prefix: list[int], new_tokens: int) -> dict:
    """Matrix-product FLOPs one step needs (see the module docstring), per phase. ``*_prefix``: the token
    count of each row's student and teacher prefix."""
    update = 0
    for s, t in zip(student_prefix, teacher_prefix):
        update += 3 * forward_flops(m, vocab, s, new_tokens, new_tokens)  # student forward + backward
        update += forward_flops(m, vocab, t, new_tokens, new_tokens)      # teacher forward, no grad
    generate = 0
    for s in student_prefix:
        generate += forward_flops(m, vocab, s, new_tokens - 1, 0)         # every token but the last sampled
        generate += new_tokens * 2 * m["hidden"] * vocab                  # one logit row per sampled token
    return {"update": update, "generate": generate}


def gemm_peak_flops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """Best measured fp32 matrix-multiply rate (FLOP/s) on ``threads`` threads: n x n by n x n, best of 5."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 * repeats / best
