"""Supervised specialisation: turn one base model into a specialist of a domain before round 1.

Why: OPCoD needs two peers that are each stronger in one domain. The paper gets them by fine-tuning
Qwen3-8B into domain specialists first; two copies of the same base model would be equally cognizant
everywhere (both gates always open, the peer is the model itself). This stage is that fine-tuning:
plain supervised learning (mean token negative log-likelihood of the target after the prompt) on the
train split of the student's strong domain (``SpecializeConfig.domains`` to choose others).

Examples. Prompt: the rollout prompt (``prompts.rollout_messages``, rendered with the student's chat
template and ``chat_template_kwargs``, so exactly what the student will see in training and evaluation).
Target: the item's worked solution when the dataset has one (``meta`` key ``solution``, ``explanation``,
``rationale`` or ``fact``, the first present), a newline, then ``Answer: <gold>``, then EOS: the answer
format the answer checker reads, and the stop decision. Examples longer than ``max_length`` tokens
(prompt + target) are left out and counted, never truncated: a truncated target would lose its answer.

Schedule. Epochs over the items, each shuffled with ``Random(f"specialize-{seed}-{name}-{epoch}")``
and cut into batches of ``batch_size`` (the last one of an epoch may be smaller); ``steps`` (when set)
takes that many batches from the epoch sequence instead of ``epochs`` full passes. Learning rate:
linear warm-up over ``lr_warmup_steps``, then constant or cosine decay to 0 over the remaining steps.
AdamW with the run's weight decay and gradient clipping (a fresh optimizer afterwards: the OPCoD
phase does not inherit these moments). ``micro_batch`` splits a batch for memory (gradient
accumulation; the update is that of the whole batch).

Everything is a pure function of (items, config, seed, student name), so ``build.build_student``
caches the result by content (``build.warmup_key``) like the warm-up.

Not the same as ``opcod_core.warmup``: that warm-up also teaches tiny random models the tutor format
and hint use, which real models do not need; it stays as it is (its cache keys included).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from opcod_core.config import SpecializeConfig
from opcod_core.data.types import Item
from opcod_core.prompts import rollout_messages

SOLUTION_KEYS = ("solution", "explanation", "rationale", "fact")


def solution_text(item: Item) -> str | None:
    """The item's worked solution, from the first ``SOLUTION_KEYS`` entry of its meta that is a
    non-empty string; None when the dataset gives none (SciKnowEval, MMLU)."""
    for key in SOLUTION_KEYS:
        value = item.meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def specialize_target(item: Item, solutions: bool = True) -> str:
    """``"<solution>\\nAnswer: <gold>"`` (or only the answer line), without EOS."""
    answer = f"Answer: {item.gold}"
    sol = solution_text(item) if solutions else None
    return f"{sol}\n{answer}" if sol else answer


def lr_at(step: int, total: int, cfg: SpecializeConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total``."""
    warm = min(cfg.lr_warmup_steps, total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def plan_batches(n: int, cfg: SpecializeConfig, seed: int, name: str) -> list[list[int]]:
    """Indices of the examples of each optimizer step (see the module docstring)."""
    if n == 0:
        return []
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < total:
        order = list(range(n))
        random.Random(f"specialize-{seed}-{name}-{epoch}").shuffle(order)
        batches += [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        epoch += 1
    return batches[:total]


@dataclass
class SpecializeResult:
    curve: list[float] = field(default_factory=list)   # loss per optimizer step
    n_examples: int = 0                                  # examples used
    n_too_long: int = 0                                  # left out: longer than max_length
    lrs: list[float] = field(default_factory=list)       # learning rate per step


def specialize(student, items: list[Item], cfg: SpecializeConfig, seed: int,
               progress: Callable[[int, int, float], None] | None = None) -> SpecializeResult:
    """Supervised specialisation of ``student`` (a ``StudentRuntime``) on ``items``."""
    if not items:
        raise ValueError(f"student {student.name}: no specialisation items")
    eos = student.tokenizer.eos_token or ""
    prompts, targets = [], []
    too_long = 0
    for it in items:
        prompt = student.render(rollout_messages(it.question, list(it.labels), list(it.choices), it.answer_type))
        target = student.encode(specialize_target(it, cfg.solutions) + eos)
        if len(prompt) + len(target) > cfg.max_length:
            too_long += 1
            continue
        prompts.append(prompt)
        targets.append(target)
    if not prompts:
        raise ValueError(f"student {student.name}: all {len(items)} specialisation examples are longer than "
                         f"specialize.max_length={cfg.max_length} tokens")
    result = SpecializeResult(n_examples=len(prompts), n_too_long=too_long)
    batches = plan_batches(len(prompts), cfg, seed, student.name)
    for step, batch in enumerate(batches):
        lr = lr_at(step, len(batches), cfg)
        loss = student.sft_step([prompts[i] for i in batch], [targets[i] for i in batch], lr=lr,
                                micro_batch=cfg.micro_batch)
        result.curve.append(loss)
        result.lrs.append(lr)
        if progress is not None:
            progress(step + 1, len(batches), loss)
    return result
