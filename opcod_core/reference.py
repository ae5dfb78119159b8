"""Other weights for a student's model: its frozen initial policy and its EMA teacher.

* ``WeightSnapshot``: a frozen copy of the parameters at the start of the run (after the warm-up), kept
  on CPU in the model's dtype: one per student. It serves three purposes: the ``train/weight_l2``
  metric ||θ − θ_init||₂ (over all trainable parameters, float32), the reference policy π_init of the
  KL anchor (``loss.kl_anchor``), and the frozen teacher of the ``one_way`` baseline (the peer's
  initial weights). It is never updated and is stored in every checkpoint (hard-linked from the
  previous one when possible), so a resumed or forked run keeps the same reference.
* ``EMAWeights``: θ_ema ← (1 − rate)·θ_ema + rate·θ after each update, initialised at θ_init, kept
  in float32 on the model's device (a small rate would be lost to rounding in bfloat16). The
  self-teacher's logits then come from θ_ema instead of the live weights (``teacher.ema_rate``; SDPO
  and TRL offer it to slow the teacher's drift). Stored in every checkpoint.
* ``swapped_weights``: run the student's own module with other weights for a no-grad forward pass
  by pointing each parameter's data at the other tensor and restoring it on exit (nothing is copied
  when device and dtype already match; a CPU snapshot is moved to the device once per call). It must
  never wrap a forward pass whose graph is used for a backward pass.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch


def _params(model) -> dict[str, torch.nn.Parameter]:
    # named_parameters() lists tied weights once (e.g. lm_head tied to the embeddings)
    return dict(model.named_parameters())


class WeightSnapshot:
    """A frozen copy of a model's parameters, on CPU."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    @classmethod
    def of(cls, model) -> "WeightSnapshot":
        return cls({n: p.detach().to("cpu", copy=True) for n, p in _params(model).items()})

    @torch.no_grad()
    def distance(self, model) -> float:
        """||θ − θ_snapshot||₂ over the model's parameters, accumulated in float32 (float64 sum)."""
        total = 0.0
        for n, p in _params(model).items():
            ref = self.tensors[n].to(device=p.device)
            total += float((p.detach().float() - ref.float()).pow(2).sum().double())
        return math.sqrt(total)

    def on(self, device) -> dict[str, torch.Tensor]:
        return {n: t.to(device) for n, t in self.tensors.items()}

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: t.contiguous() for n, t in self.tensors.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> "WeightSnapshot":
        from safetensors.torch import load_file

        return cls(load_file(str(path), device="cpu"))


class EMAWeights:
    """Exponential moving average of a model's parameters (float32, on the parameters' device)."""

    def __init__(self, tensors: dict[str, torch.Tensor], rate: float) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"teacher.ema_rate must be in (0, 1], got {rate}")
        self.tensors = tensors
        self.rate = rate

    @classmethod
    def of(cls, model, rate: float) -> "EMAWeights":
        return cls({n: p.detach().float().clone() for n, p in _params(model).items()}, rate)

    @torch.no_grad()
    def update(self, model) -> None:
        """θ_ema ← (1 − rate)·θ_ema + rate·θ."""
        for n, p in _params(model).items():
            self.tensors[n].lerp_(p.detach().float(), self.rate)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: t.detach().cpu().contiguous() for n, t in self.tensors.items()}, str(path))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
        if set(state) != set(self.tensors):
            raise RuntimeError(f"EMA weights in {path} do not match the model's parameters")
        for n, t in self.tensors.items():
            t.copy_(state[n])


@contextmanager
def swapped_weights(model, tensors: dict[str, torch.Tensor] | None):
    """Inside the block the model computes with ``tensors`` (None: its own weights). No-grad use only."""
    if tensors is None:
        yield
        return
    params = _params(model)
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for n, t in tensors.items():
                p = params[n]
                saved[n] = p.data
                p.data = t.to(device=p.device, dtype=p.dtype)
        yield
    finally:
        for n, d in saved.items():
            params[n].data = d
