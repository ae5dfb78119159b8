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
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from opcod_core import losses, models
from opcod_core.config import LossConfig, OptimConfig
from opcod_core.generation.base import Completion, SamplingParams


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

    def render(self, messages: list[dict], prefill: str = "") -> list[int]:
        return models.render_prompt(self.tokenizer, messages, add_generation_prompt=True, prefill=prefill)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token as the text it contributes (byte-level pieces decoded one at a time)."""
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]


class StudentRuntime(TextOps):
    def __init__(self, name: str, model, tokenizer, backend, optim: OptimConfig, device: str = "cpu",
                 micro_batch: int = 8) -> None:
        self.name = name
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.backend = backend
        self.device = device
        self.micro_batch = micro_batch
        self.optim_cfg = optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim.lr,
                                           weight_decay=optim.weight_decay)
        self.updates = 0

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
        over the candidates (the teacher's answer distribution over choice letters)."""
        self.model.eval()
        out = self.model(torch.tensor([prefix], device=self.device))
        logp_V = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        firsts = torch.tensor([c[0] for c in candidates], device=self.device)
        return torch.softmax(logp_V[firsts], dim=-1).tolist()

    # --- training --------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_logits(self, examples: list[DistillExample], micro_batch: int | None = None) -> list[torch.Tensor]:
        """This model's logits over each example's rollout under its teacher prefix, one tensor per
        micro-batch (of the *tutee's* size) of the examples that have a teacher prefix: what
        ``distill_step(teacher_logits=...)`` consumes."""
        trained = [e for e in examples if e.teacher_prefix is not None]
        mb = micro_batch or self.micro_batch
        was = self.model.training
        self.model.eval()
        try:
            return [self._logits([e.teacher_prefix for e in trained[i:i + mb]],
                                 [e.rollout for e in trained[i:i + mb]])[0]
                    for i in range(0, len(trained), mb)]
        finally:
            self.model.train(was)

    def distill_step(self, examples: list[DistillExample], loss_cfg: LossConfig,
                     teacher: "StudentRuntime | None" = None,
                     teacher_logits: list[torch.Tensor] | None = None) -> StepOutput:
        """One optimizer step of self-distillation (or, with ``teacher``, distillation from a frozen
        peer that shares the tokenizer: the ``one_way`` baseline). ``teacher_logits`` are the
        frozen peer's ``teacher_logits(examples)`` computed elsewhere (the peer in another process)."""
        teacher_rt = teacher or self
        trained = [e for e in examples if e.teacher_prefix is not None]
        n_trained = len(trained)
        results: dict[int, ExampleResult] = {}
        self.backend.offload()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for ci, start in enumerate(range(0, n_trained, self.micro_batch)):
            chunk = trained[start:start + self.micro_batch]
            rollouts = [e.rollout for e in chunk]
            if teacher_logits is not None:
                t_BTV = teacher_logits[ci].to(self.device)
            else:
                t_BTV = teacher_rt.teacher_logits(chunk, micro_batch=len(chunk))[0]
            s_BTV, mask_BT = self._logits([e.student_prefix for e in chunk], rollouts)
            div_BT = losses.per_token_divergence(s_BTV, t_BTV, mask_BT, kind=loss_cfg.divergence,
                                                 beta=loss_cfg.beta, topk=loss_cfg.topk,
                                                 chunk_size=loss_cfg.chunk_size)
            lens_B = mask_BT.sum(dim=1).clamp(min=1)
            seq_B = (div_BT * mask_BT).sum(dim=1) / lens_B
            weights_B = torch.tensor([e.weight for e in chunk], device=seq_B.device)
            loss = (seq_B * weights_B).sum() / n_trained
            loss.backward()
            total += float(loss.detach())
            tok_lp_BT = gather_token_logprobs(s_BTV.detach(), rollouts)
            for i, e in enumerate(chunk):
                n = len(e.rollout)
                results[id(e)] = ExampleResult(divergence=div_BT[i, :n].detach().tolist(), divergence_s_only=None,
                                               student_logprob=tok_lp_BT[i, :n].tolist(),
                                               loss=float(seq_B[i].detach()))
        grad_norm = 0.0
        if n_trained:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm))
            self.optimizer.step()
            self.updates += 1
            self.backend.sync_weights(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        # Skipped rollouts: teacher = student, divergence exactly zero; still report their logprobs.
        skipped = [e for e in examples if e.teacher_prefix is None]
        if skipped:
            lps = self.token_logprobs([e.student_prefix for e in skipped], [e.rollout for e in skipped])
            for e, lp in zip(skipped, lps, strict=True):
                results[id(e)] = ExampleResult([0.0] * len(e.rollout), None, lp, 0.0)
        return StepOutput(loss=total, results=[results[id(e)] for e in examples],
                          metrics={"train/grad_norm": grad_norm, "train/trained": float(n_trained),
                                   "train/skipped": float(len(skipped))})

    def policy_gradient_step(self, prefixes: list[list[int]], rollouts: list[list[int]],
                             advantages: list[float]) -> StepOutput:
        """GRPO baseline step (on-policy, so the importance ratio is 1 and clipping is inactive):
        loss = -mean_i A_i * (1/|y_i|) sum_t log p(y_i,t)."""
        self.backend.offload()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = len(rollouts)
        out: list[ExampleResult] = []
        total = 0.0
        for start in range(0, n, self.micro_batch):
            pre, ys = prefixes[start:start + self.micro_batch], rollouts[start:start + self.micro_batch]
            adv_B = torch.tensor(advantages[start:start + self.micro_batch], device=self.device)
            s_BTV, mask_BT = self._logits(pre, ys)
            tok_lp_BT = gather_token_logprobs(s_BTV, ys) * mask_BT
            seq_lp_B = tok_lp_BT.sum(1) / mask_BT.sum(1).clamp(min=1)
            loss = -(adv_B * seq_lp_B).sum() / max(n, 1)
            loss.backward()
            total += float(loss.detach())
            for i, r in enumerate(ys):
                out.append(ExampleResult([0.0] * len(r), None, tok_lp_BT[i, : len(r)].detach().tolist(),
                                         float(-(adv_B[i] * seq_lp_B[i]).detach())))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm))
        self.optimizer.step()
        self.updates += 1
        self.backend.sync_weights(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(loss=total, results=out, metrics={"train/grad_norm": grad_norm})

    @torch.no_grad()
    def token_logprobs(self, prefixes: list[list[int]], rollouts: list[list[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(rollouts), self.micro_batch):
            pre, ys = prefixes[start:start + self.micro_batch], rollouts[start:start + self.micro_batch]
            s_BTV, _ = self._logits(pre, ys)
            tok_lp_BT = gather_token_logprobs(s_BTV, ys)
            out += [tok_lp_BT[i, : len(r)].tolist() for i, r in enumerate(ys)]
        return out

    def sft_step(self, prompts: list[list[int]], targets: list[list[int]], lr: float | None = None) -> float:
        """Supervised step (warm-up): mean token NLL of targets after prompts."""
        self.backend.offload()
        self.model.train()
        if lr is not None:
            for g in self.optimizer.param_groups:
                g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        s_BTV, mask_BT = self._logits(prompts, targets)
        nll_BT = -gather_token_logprobs(s_BTV, targets) * mask_BT
        loss = (nll_BT.sum(1) / mask_BT.sum(1).clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.backend.sync_weights(self.model)
        return float(loss.detach())

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
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.optim_cfg.lr,
                                           weight_decay=self.optim_cfg.weight_decay)

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
    def save(self, directory: Path, with_optimizer: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        models.save_model(self.model, self.tokenizer, directory / "model")
        if with_optimizer:
            torch.save({"optimizer": self.optimizer.state_dict(), "updates": self.updates},
                       directory / "optimizer.pt")

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
        self.backend.sync_weights(self.model)
