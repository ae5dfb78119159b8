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
from pathlib import Path
from typing import Sequence

import torch

from opcod_core import losses, models
from opcod_core.config import LossConfig, OptimConfig
from opcod_core.generation.base import Completion, SamplingParams
from opcod_core.optim import build_optimizer, set_lr
from opcod_core.reference import EMAWeights, WeightSnapshot, swapped_weights
from opcod_core.student_storage import load_student, save_student
from opcod_core.student_types import DistillExample, ExampleResult, StepOutput, TextOps


def gather_token_logprobs(logits_BTV: torch.Tensor, rollouts: list[list[int]]) -> torch.Tensor:
    """log p(y_t) for each rollout token (0 beyond a rollout's end), differentiable."""
    ids_BT = torch.zeros(logits_BTV.shape[:2], dtype=torch.long, device=logits_BTV.device)
    for i, r in enumerate(rollouts):
        ids_BT[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=logits_BTV.device)
    # log p(y_t) = z[y_t] - logsumexp(z), one row at a time: no [B, T, V] temporary (49k vocabulary, 16 x 64
    # tokens: 200 MB each).
    picked_BT = logits_BTV.gather(-1, ids_BT.unsqueeze(-1)).squeeze(-1).float()
    norm_BT = torch.stack([torch.logsumexp(row_TV.float(), dim=-1) for row_TV in logits_BTV.unbind(0)])
    return picked_BT - norm_BT


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
            given = teacher_logits[ci].to(self.device) if teacher_logits is not None else None
            loss, anchor = self._distill_chunk(chunk, given, n_trained, anchor_w, loss_cfg, results)
            del given
            total, anchor_total = total + loss, anchor_total + anchor
        del anchor_w
        skipped = self._skipped_results(examples, results)
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
                                   "train/skipped": float(skipped), **metrics})

    def _distill_chunk(self, chunk: list[DistillExample], t_BTV: torch.Tensor | None, n_trained: int, anchor_w,
                       loss_cfg: LossConfig, results: dict[int, ExampleResult]) -> tuple[float, float]:
        """Backward of one micro-batch's share of the loss (and of the KL anchor); fills ``results``.
        ``t_BTV``: the teacher's logits, or None for the self-teacher's (computed here). Returns the chunk's
        (distillation loss, anchor) contributions. Memory: the teacher's and the student's logits are
        dropped before the backward pass (the loss keeps its own gradient buffer), so the backward
        holds one [B, T, V] tensor, not three."""
        rollouts = [e.rollout for e in chunk]
        if t_BTV is None:
            t_BTV = self.teacher_logits(chunk, micro_batch=len(chunk))[0]
        s_BTV, mask_BT = self._logits([e.student_prefix for e in chunk], rollouts)
        div_BT = losses.per_token_divergence(s_BTV, t_BTV, mask_BT, kind=loss_cfg.divergence, beta=loss_cfg.beta,
                                             topk=loss_cfg.topk, chunk_size=loss_cfg.chunk_size)
        del t_BTV
        seq_B = (div_BT * mask_BT).sum(dim=1) / mask_BT.sum(dim=1).clamp(min=1)
        weights_B = torch.tensor([e.weight for e in chunk], device=seq_B.device)
        loss = (seq_B * weights_B).sum() / n_trained
        objective, anchor_value = loss, 0.0
        if anchor_w is not None:
            anchor = self._anchor(s_BTV, [e.student_prefix for e in chunk], rollouts, mask_BT, anchor_w,
                                  loss_cfg).sum() / n_trained
            objective = loss + loss_cfg.kl_anchor * anchor
            anchor_value = float(anchor.detach())
        tok_lp_BT = gather_token_logprobs(s_BTV.detach(), rollouts)
        del s_BTV
        objective.backward()
        for i, e in enumerate(chunk):
            n = len(e.rollout)
            results[id(e)] = ExampleResult(divergence=div_BT[i, :n].detach().tolist(), divergence_s_only=None,
                                           student_logprob=tok_lp_BT[i, :n].tolist(), loss=float(seq_B[i].detach()))
        return float(loss.detach()), anchor_value

    def _skipped_results(self, examples: list[DistillExample], results: dict[int, ExampleResult]) -> int:
        """Skipped rollouts: teacher = student, divergence exactly zero; still report their logprobs, under
        the weights that sampled them (before the update, like every other number of this step)."""
        skipped = [e for e in examples if e.teacher_prefix is None]
        if skipped:
            lps = self.token_logprobs([e.student_prefix for e in skipped], [e.rollout for e in skipped])
            for e, lp in zip(skipped, lps, strict=True):
                results[id(e)] = ExampleResult([0.0] * len(e.rollout), None, lp, 0.0)
        return len(skipped)

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

    # --- persistence (opcod_core.student_storage) ------------------------------------------------------
    def save(self, directory: Path, with_optimizer: bool = True, previous: Path | None = None) -> None:
        save_student(self, directory, with_optimizer=with_optimizer, previous=previous)

    def load(self, directory: Path) -> None:
        load_student(self, directory)
