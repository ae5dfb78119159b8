"""The training optimizer of a student and its learning-rate schedule.

AdamW with the config's ``betas``, ``eps`` and ``weight_decay``. The learning rate of update u (the
number of updates this student has made before it, 0-based) is ``lr * lr_factor(u, ...)``:

* linear warm-up over the first ``warmup_steps`` updates: factor (u + 1) / W, so the first update
  already moves (1/W of the peak) and update W - 1 runs at the peak;
* then ``constant`` (factor 1) or ``cosine``: with progress p = (u - W) / (N - W) clamped to [0, 1],
  factor = m + (1 - m) · ½ (1 + cos π p), from 1 at the end of the warm-up down to m = ``min_lr_ratio``
  after N = rounds × steps_per_direction updates (the student's updates in the whole run).

The factor is a pure function of the update count, which the checkpoint already stores
(``StudentRuntime.updates``), so a resumed run uses exactly the learning rates of an uninterrupted one
and no scheduler state needs saving. Steps without an update (every rollout skipped) do not advance
the schedule. The supervised warm-up (``sft_step``) uses its own optimizer at its own learning rate
(``students[i].warmup_lr``) and never touches this schedule.
"""

from __future__ import annotations

import math

import torch

from opcod_core.config import OptimConfig


def lr_factor(update: int, warmup_steps: int, total_updates: int, schedule: str = "constant",
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for update ``update`` (0-based)."""
    if update < 0:
        raise ValueError(f"update must be >= 0, got {update}")
    if warmup_steps > 0 and update < warmup_steps:
        return (update + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    span = max(1, total_updates - warmup_steps)
    progress = min(1.0, max(0.0, (update - warmup_steps) / span))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all parameters) where torch has the kernel: measured 13 ms against
    94 ms per step for a 16M-parameter model on 2 CPU threads. Same update up to float rounding; a
    checkpoint's optimizer state keeps the implementation it was saved with, so a resume is exact."""
    params = list(params)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, cfg: OptimConfig, update: int, total_updates: int) -> float:
    """Set every parameter group's learning rate for update ``update``; returns it."""
    lr = cfg.lr * lr_factor(update, cfg.warmup_steps, total_updates, cfg.schedule, cfg.min_lr_ratio)
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr
