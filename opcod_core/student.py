"""One student at run time: its model, tokenizer, optimizer and generation backend, and every
operation that touches its weights.

The trainer orchestrates (which prompts, which contexts, which feedback); this class computes.
That split is what lets an executor move a student elsewhere (a Ray actor) without the trainer
changing: everything crossing the boundary is token ids, text and small per-token float lists.

Self-distillation step (DESIGN section 2, step 7): for each rollout y with student prefix x_S and
teacher prefix x_T (question + s + f), the student's logits over y are taken under x_S with
gradient and the self-teacher's under x_T with the *same* weights under ``torch.no_grad`` (the
stop-gradient). Both are taken over exactly y's tokens (``models.token_logits`` appends y's ids to
each prefix), so position t of both tensors predicts y_t. When y ended with EOS, that token is the
last of y's ids (``generation.base``), so the last position scores the decision to stop; the same
holds for the GRPO log-probabilities and the frozen peer's logits.

Weights other than the live ones (``opcod_core.reference``): the run's initial weights (a frozen CPU
snapshot taken by ``mark_initial`` after the warm-up: ``train/weight_l2``, the KL anchor's π_init and
the ``one_way`` teacher) and, with ``teacher.ema_rate``, the EMA self-teacher. Both are computed
with this student's own module (``swapped_weights``) and saved with its checkpoint. The optimizer and
its learning-rate schedule are in ``opcod_core.optim``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from opcod_core import losses, models
from opcod_core.config import LossConfig, OptimConfig
from opcod_core.generation.base import Completion, SamplingParams
from opcod_core.optim import build_optimizer, set_lr
from opcod_core.reference import EMAWeights, WeightSnapshot, swapped_weights


@dataclass
class DistillExample:
    """One rollout to train on. ``teacher_prefix`` None means teacher = student (skipped)."""

    student_prefix: list[int]
    rollout: list[int]
    teacher_prefix: list[int] | None
    s_only_prefix: list[int] | None = None   # for the feedback-effect heatmap (divergence with s only)
    weight: float = 1.0


@dataclass
class ExampleResult:
    divergence: list[float]                  # per rollout token, under the teacher context used
    divergence_s_only: list[float] | None    # per rollout token, teacher with s only (None: not computed)
    student_logprob: list[float]             # log p_student(y_t) per token
    loss: float                              # this rollout's mean token divergence (0 when skipped)


@dataclass
class StepOutput:
    loss: float
    results: list[ExampleResult]
    metrics: dict[str, float] = field(default_factory=dict)


def gather_token_logprobs(logits_BTV: torch.Tensor, rollouts: list[list[int]]) -> torch.Tensor:
    """log p(y_t) for each rollout token (0 beyond a rollout's end), differentiable."""
    ids_BT = torch.zeros(logits_BTV.shape[:2], dtype=torch.long, device=logits_BTV.device)
    for i, r in enumerate(rollouts):
        ids_BT[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=logits_BTV.device)
    logp_BTV = torch.log_softmax(logits_BTV.float(), dim=-1)
    return logp_BTV.gather(-1, ids_BT.unsqueeze(-1)).squeeze(-1)


class TextOps:
    """Tokenizer-only operations; shared by the runtime and by proxies of students that live in
    another process (they keep a copy of the tokenizer, so text never crosses the boundary twice)."""

    tokenizer = None
    chat_template_kwargs: dict = {}  # the student's StudentConfig.chat_template_kwargs (never mutated)

    def render(self, messages: list[dict], prefill: str = "") -> list[int]:
        """Every prompt of this student (rollouts, self-teacher, tutor, evaluation, warm-up) goes
        through here, with the student's chat template variables."""
        return models.render_prompt(self.tokenizer, messages, add_generation_prompt=True, prefill=prefill,
                                    chat_template_kwargs=self.chat_template_kwargs)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token as the text it contributes (byte-level pieces decoded one at a time)."""
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]


class StudentRuntime(TextOps):
    def __init__(self, name: str, model, tokenizer, backend, optim: OptimConfig, device: str = "cpu",
                 micro_batch: int = 8, chat_template_kwargs: dict | None = None, ema_rate: float | None = None,
                 total_updates: int = 1) -> None:
        self.name = name
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.backend = backend
        self.device = device
        self.micro_batch = micro_batch
        self.optim_cfg = optim
        self.optimizer = build_optimizer(self.model.parameters(), optim)
        self._sft_optimizer: torch.optim.Optimizer | None = None
        self.updates = 0
        self.total_updates = total_updates   # this student's updates in the run (the lr schedule's length)
        self.ema_rate = ema_rate or None
        self.reference: WeightSnapshot | None = None   # the run's initial weights (``mark_initial``)
        self.ema: EMAWeights | None = None

    def mark_initial(self) -> None:
        """Take the run's initial weights as they are now (after the warm-up): the frozen reference,
        and the starting point of the EMA teacher."""
        self.reference = WeightSnapshot.of(self.model)
        self.ema = EMAWeights.of(self.model, self.ema_rate) if self.ema_rate else None

    def _weights(self, which: str) -> dict[str, torch.Tensor] | None:
        """Tensors to compute with: ``self_teacher`` (the EMA when on, else None: the live weights) or
        ``reference`` (the run's initial weights)."""
        if which == "reference":
            if self.reference is None:
                raise RuntimeError(f"student {self.name}: no initial weights (mark_initial was not called)")
            return self.reference.on(self.device)
        if which != "self_teacher":
            raise ValueError(f"weights must be 'self_teacher' or 'reference', got {which!r}")
        return self.ema.tensors if self.ema is not None else None

    def _after_update(self, metrics: dict[str, float], updated: bool) -> None:
        """EMA step after an update; ``train/weight_l2`` = ||θ − θ_init||₂ (after it) in ``metrics``."""
        if updated and self.ema is not None:
            self.ema.update(self.model)
        if self.reference is not None:
            metrics["train/weight_l2"] = self.reference.distance(self.model)

    # --- generation ------------------------------------------------------------------------------
    def sample(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        return self.backend.generate(prompts, params)

    # --- scoring -------------------------------------------------------------------------------
    def _logits(self, prefixes: list[list[int]], rollouts: list[list[int]]):
        logits_BTV, mask_BT = models.token_logits(self.model, prefixes, rollouts)
        return logits_BTV, mask_BT.to(logits_BTV.device)

    @torch.no_grad()
    def divergence_between(self, student_prefixes, teacher_prefixes, rollouts, loss_cfg: LossConfig,
                           temperature: float = 1.0) -> list[list[float]]:
        """Per-token divergence of student context vs teacher context, no update (replays, s-only)."""
        was_training = self.model.training
        self.model.eval()
        try:
            s_BTV, mask_BT = self._logits(student_prefixes, rollouts)
            with swapped_weights(self.model, self._weights("self_teacher")):
                t_BTV, _ = self._logits(teacher_prefixes, rollouts)
            div_BT = losses.per_token_divergence(s_BTV, t_BTV, mask_BT, kind=loss_cfg.divergence,
                                                 beta=loss_cfg.beta, topk=loss_cfg.topk,
                                                 chunk_size=loss_cfg.chunk_size, temperature=temperature)
            return [div_BT[i, : len(r)].tolist() for i, r in enumerate(rollouts)]
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def next_token_distribution(self, prefix: list[int], candidates: list[list[int]]) -> list[float]:
        """Probability of each candidate continuation's first token after ``prefix``, renormalised
        over the candidates (the teacher's answer distribution over choice letters), under the
        self-teacher's weights."""
        self.model.eval()
        with swapped_weights(self.model, self._weights("self_teacher")):
            out = self.model(torch.tensor([prefix], device=self.device))
        logp_V = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        firsts = torch.tensor([c[0] for c in candidates], device=self.device)
        return torch.softmax(logp_V[firsts], dim=-1).tolist()

    # --- training --------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_logits(self, examples: list[DistillExample], micro_batch: int | None = None,
                       weights: str = "self_teacher") -> list[torch.Tensor]:
        """This model's logits over each example's rollout under its teacher prefix, one tensor per
        micro-batch (of the *tutee's* size) of the examples that have a teacher prefix: what
        ``distill_step(teacher_logits=...)`` consumes. ``weights``: ``self_teacher`` (live, or the
        EMA when on) or ``reference`` (the run's initial weights: the one_way teacher)."""
        trained = [e for e in examples if e.teacher_prefix is not None]
        mb = micro_batch or self.micro_batch
        was = self.model.training
        self.model.eval()
        try:
            with swapped_weights(self.model, self._weights(weights) if trained else None):
                return [self._logits([e.teacher_prefix for e in trained[i:i + mb]],
                                     [e.rollout for e in trained[i:i + mb]])[0]
                        for i in range(0, len(trained), mb)]
        finally:
            self.model.train(was)

    @torch.no_grad()
    def _reference_logits(self, prefixes, rollouts, ref_weights) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with swapped_weights(self.model, ref_weights):
                return self._logits(prefixes, rollouts)[0]
        finally:
            self.model.train(was)

    def _anchor(self, s_BTV, prefixes, rollouts, mask_BT, ref_weights, loss_cfg: LossConfig) -> torch.Tensor:
        """Per-rollout KL anchor (1/|y|) Σ_t KL(π_θ(·|x, y<t) ‖ π_init(·|x, y<t)), full vocabulary."""
        r_BTV = self._reference_logits(prefixes, rollouts, ref_weights)
        kl_BT = losses.per_token_divergence(s_BTV, r_BTV, mask_BT, kind="reverse_kl",
                                            chunk_size=loss_cfg.chunk_size)
        return (kl_BT * mask_BT).sum(dim=1) / mask_BT.sum(dim=1).clamp(min=1)

    def distill_step(self, examples: list[DistillExample], loss_cfg: LossConfig,
                     teacher: "StudentRuntime | None" = None,
                     teacher_logits: list[torch.Tensor] | None = None) -> StepOutput:
        """One optimizer step of self-distillation (or, with ``teacher``, distillation from a frozen
        peer that shares the tokenizer: the ``one_way`` baseline). ``teacher_logits`` are the
        frozen peer's ``teacher_logits(examples, weights="reference")`` computed elsewhere (the peer
        in another process). The peer teaches with its *initial* weights (``mark_initial``), never
        its current ones. ``loss_cfg.kl_anchor`` > 0 adds coef · mean over trained rollouts of the KL
        anchor to the objective; the returned ``loss`` stays the distillation loss and the anchor is
        reported as ``loss/kl_anchor`` (its mean KL, before the coefficient)."""
        trained = [e for e in examples if e.teacher_prefix is not None]
        n_trained = len(trained)
        results: dict[int, ExampleResult] = {}
        if teacher is not None and teacher_logits is None and n_trained:
            teacher_logits = teacher.teacher_logits(examples, self.micro_batch, weights="reference")
        self.backend.offload()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        lr = set_lr(self.optimizer, self.optim_cfg, self.updates, self.total_updates)
        anchor_w = self._weights("reference") if loss_cfg.kl_anchor > 0 and n_trained else None
        total, anchor_total = 0.0, 0.0
        for ci, start in enumerate(range(0, n_trained, self.micro_batch)):
            chunk = trained[start:start + self.micro_batch]
            rollouts = [e.rollout for e in chunk]
            if teacher_logits is not None:
                t_BTV = teacher_logits[ci].to(self.device)
            else:
                t_BTV = self.teacher_logits(chunk, micro_batch=len(chunk))[0]
            s_BTV, mask_BT = self._logits([e.student_prefix for e in chunk], rollouts)
            div_BT = losses.per_token_divergence(s_BTV, t_BTV, mask_BT, kind=loss_cfg.divergence,
                                                 beta=loss_cfg.beta, topk=loss_cfg.topk,
                                                 chunk_size=loss_cfg.chunk_size)
            lens_B = mask_BT.sum(dim=1).clamp(min=1)
            seq_B = (div_BT * mask_BT).sum(dim=1) / lens_B
            weights_B = torch.tensor([e.weight for e in chunk], device=seq_B.device)
            loss = (seq_B * weights_B).sum() / n_trained
            objective = loss
            if anchor_w is not None:
                anchor = self._anchor(s_BTV, [e.student_prefix for e in chunk], rollouts, mask_BT, anchor_w,
                                      loss_cfg).sum() / n_trained
                objective = loss + loss_cfg.kl_anchor * anchor
                anchor_total += float(anchor.detach())
            objective.backward()
            total += float(loss.detach())
            tok_lp_BT = gather_token_logprobs(s_BTV.detach(), rollouts)
            for i, e in enumerate(chunk):
                n = len(e.rollout)
                results[id(e)] = ExampleResult(divergence=div_BT[i, :n].detach().tolist(), divergence_s_only=None,
                                               student_logprob=tok_lp_BT[i, :n].tolist(),
                                               loss=float(seq_B[i].detach()))
        del anchor_w
        # Skipped rollouts: teacher = student, divergence exactly zero; still report their logprobs, under
        # the weights that sampled them (before the update, like every other number of this step).
        skipped = [e for e in examples if e.teacher_prefix is None]
        if skipped:
            lps = self.token_logprobs([e.student_prefix for e in skipped], [e.rollout for e in skipped])
            for e, lp in zip(skipped, lps, strict=True):
                results[id(e)] = ExampleResult([0.0] * len(e.rollout), None, lp, 0.0)
        grad_norm = 0.0
        metrics: dict[str, float] = {"train/lr": lr}
        if n_trained:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm))
            self.optimizer.step()
            self.updates += 1
            self.backend.sync_weights(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self._after_update(metrics, updated=bool(n_trained))
        if loss_cfg.kl_anchor > 0:
            metrics["loss/kl_anchor"] = anchor_total
        return StepOutput(loss=total, results=[results[id(e)] for e in examples],
                          metrics={"train/grad_norm": grad_norm, "train/trained": float(n_trained),
                                   "train/skipped": float(len(skipped)), **metrics})

    def policy_gradient_step(self, prefixes: list[list[int]], rollouts: list[list[int]],
                             advantages: list[float], loss_cfg: LossConfig | None = None) -> StepOutput:
        """GRPO baseline step (on-policy, so the importance ratio is 1 and clipping is inactive):
        loss = -mean_i A_i * (1/|y_i|) sum_t log p(y_i,t), plus the KL anchor when ``loss_cfg`` has one."""
        kl_coef = loss_cfg.kl_anchor if loss_cfg is not None else 0.0
        self.backend.offload()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        lr = set_lr(self.optimizer, self.optim_cfg, self.updates, self.total_updates)
        anchor_w = self._weights("reference") if kl_coef > 0 else None
        n = len(rollouts)
        out: list[ExampleResult] = []
        total, anchor_total = 0.0, 0.0
        for start in range(0, n, self.micro_batch):
            pre, ys = prefixes[start:start + self.micro_batch], rollouts[start:start + self.micro_batch]
            adv_B = torch.tensor(advantages[start:start + self.micro_batch], device=self.device)
            s_BTV, mask_BT = self._logits(pre, ys)
            tok_lp_BT = gather_token_logprobs(s_BTV, ys) * mask_BT
            seq_lp_B = tok_lp_BT.sum(1) / mask_BT.sum(1).clamp(min=1)
            loss = -(adv_B * seq_lp_B).sum() / max(n, 1)
            objective = loss
            if anchor_w is not None:
                anchor = self._anchor(s_BTV, pre, ys, mask_BT, anchor_w, loss_cfg).sum() / max(n, 1)
                objective = loss + kl_coef * anchor
                anchor_total += float(anchor.detach())
            objective.backward()
            total += float(loss.detach())
            for i, r in enumerate(ys):
                out.append(ExampleResult([0.0] * len(r), None, tok_lp_BT[i, : len(r)].detach().tolist(),
                                         float(-(adv_B[i] * seq_lp_B[i]).detach())))
        del anchor_w
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm))
        self.optimizer.step()
        self.updates += 1
        self.backend.sync_weights(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {"train/grad_norm": grad_norm, "train/lr": lr}
        self._after_update(metrics, updated=True)
        if kl_coef > 0:
            metrics["loss/kl_anchor"] = anchor_total
        return StepOutput(loss=total, results=out, metrics=metrics)

    @torch.no_grad()
    def token_logprobs(self, prefixes: list[list[int]], rollouts: list[list[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(rollouts), self.micro_batch):
            pre, ys = prefixes[start:start + self.micro_batch], rollouts[start:start + self.micro_batch]
            s_BTV, _ = self._logits(pre, ys)
            tok_lp_BT = gather_token_logprobs(s_BTV, ys)
            out += [tok_lp_BT[i, : len(r)].tolist() for i, r in enumerate(ys)]
        return out

    def sft_step(self, prompts: list[list[int]], targets: list[list[int]], lr: float | None = None,
                 micro_batch: int | None = None) -> float:
        """Supervised step (warm-up, specialisation): mean over examples of each target's mean token
        NLL after its prompt. ``micro_batch`` splits the forward/backward passes into chunks of that
        many examples (gradient accumulation, for long sequences on real models); the loss and the
        update are those of the whole batch. With one chunk (the default) the arithmetic is exactly
        that of a single pass. It has its own AdamW (default betas and eps, at ``lr``), dropped by
        ``reset_optimizer``: the warm-up never sees the training optimizer's settings or learning-rate
        schedule (and warm-up caches stay valid)."""
        self.backend.offload()
        self.model.train()
        if self._sft_optimizer is None:
            self._sft_optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.optim_cfg.lr,
                                                    weight_decay=self.optim_cfg.weight_decay)
        opt = self._sft_optimizer
        if lr is not None:
            for g in opt.param_groups:
                g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        n = len(prompts)
        mb = micro_batch or n
        total = 0.0
        for start in range(0, n, mb):
            chunk_targets = targets[start:start + mb]
            s_BTV, mask_BT = self._logits(prompts[start:start + mb], chunk_targets)
            nll_BT = -gather_token_logprobs(s_BTV, chunk_targets) * mask_BT
            loss = (nll_BT.sum(1) / mask_BT.sum(1).clamp(min=1)).mean()
            if mb < n:  # this chunk's share of the batch mean (a single chunk keeps its own arithmetic)
                loss = loss * (len(chunk_targets) / n)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.backend.sync_weights(self.model)
        return total

    def sample_with_checkpoint(self, checkpoint_dir: str | Path, prompts: list[list[int]],
                               params: SamplingParams) -> list[list[Completion]]:
        """Sample from a copy of this model holding a checkpoint's weights (replays that ask an
        earlier tutor); the live model, optimizer and backend are untouched."""
        from safetensors.torch import load_file

        from opcod_core.generation.hf import HFBackend

        state: dict = {}
        for f in sorted((Path(checkpoint_dir) / "model").glob("*.safetensors")):
            state.update(load_file(str(f)))
        if not state:
            raise FileNotFoundError(f"tutor_checkpoint: no model weights under {checkpoint_dir}")
        other = copy.deepcopy(self.model)
        other.load_state_dict(state, strict=False)
        if getattr(other.config, "tie_word_embeddings", False):
            other.tie_weights()
        return HFBackend(other, self.tokenizer, device=self.device).generate(prompts, params)

    def reset_optimizer(self) -> None:
        self._sft_optimizer = None
        self.optimizer = build_optimizer(self.model.parameters(), self.optim_cfg)

    def sync_seconds(self) -> float | None:
        """Total time the backend spent loading new weights (None: it shares the trainer's module)."""
        stats = getattr(self.backend, "stats", None)
        return float(stats["sync_s"]) if stats else None

    def close(self) -> None:
        """Release the generation backend (a vLLM engine and its weight directory)."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    # --- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path, with_optimizer: bool = True, previous: Path | None = None) -> None:
        """Weights, optimizer state, the initial weights and the EMA. ``previous``: this student's
        directory in the checkpoint this run wrote or resumed from last; its (immutable) initial
        weights are hard-linked instead of written again."""
        directory.mkdir(parents=True, exist_ok=True)
        models.save_model(self.model, self.tokenizer, directory / "model")
        if with_optimizer:
            torch.save({"optimizer": self.optimizer.state_dict(), "updates": self.updates},
                       directory / "optimizer.pt")
        if self.reference is not None:
            ref, prev = directory / "reference.safetensors", (Path(previous) / "reference.safetensors"
                                                             if previous else None)
            try:
                if prev is None or not prev.exists():
                    raise FileNotFoundError(prev)
                os.link(prev, ref)
            except OSError:
                self.reference.save(ref)
        if self.ema is not None:
            self.ema.save(directory / "ema.safetensors")

    def load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        files = sorted((directory / "model").glob("*.safetensors"))
        state: dict = {}
        for f in files:
            state.update(load_file(str(f), device=str(self.device)))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        real_missing = [m for m in missing if not m.endswith("lm_head.weight")]
        if real_missing or unexpected:
            raise RuntimeError(f"checkpoint {directory} does not match model {self.name}: "
                               f"missing {real_missing[:3]}, unexpected {unexpected[:3]}")
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.model.tie_weights()
        opt = directory / "optimizer.pt"
        if opt.exists():
            blob = torch.load(opt, map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(blob["optimizer"])
            self.updates = int(blob["updates"])
        # A checkpoint without them (written before they existed) keeps the build's initial weights
        # and starts the EMA at the loaded weights.
        if (directory / "reference.safetensors").exists():
            self.reference = WeightSnapshot.load(directory / "reference.safetensors")
        if self.ema_rate:
            self.ema = EMAWeights.of(self.model, self.ema_rate)
            if (directory / "ema.safetensors").exists():
                self.ema.load(directory / "ema.safetensors")
        self.backend.sync_weights(self.model)
