r"""Per-token divergences between a student and its self-teacher (DESIGN.md §2, step 7).

Pure torch: no model, tokenizer or config import. Everything here is a function of logits.

The maths
=========

For one position t of a rollout y, let ``p_S`` be the student's next-token distribution
(context: question, y_<t) and ``p_T`` the self-teacher's (context: question, correct sibling s,
peer feedback f, y_<t). Both are ``softmax(logits / temperature)`` over the vocabulary V. The teacher
is the same weights under stop-gradient: its logits are detached here, so gradients only ever reach
the student logits.

Divergences (same conventions as TRL's ``GKDTrainer.generalized_jsd_loss``)::

    forward_kl  = KL(p_T || p_S) = sum_v p_T(v) [log p_T(v) - log p_S(v)]      (mode covering)
    reverse_kl  = KL(p_S || p_T) = sum_v p_S(v) [log p_S(v) - log p_T(v)]      (mode seeking)
    jsd (beta)  = beta * KL(p_T || M) + (1 - beta) * KL(p_S || M),
                  with M = beta * p_T + (1 - beta) * p_S,    0 < beta < 1.

``log M`` is computed in log space, ``logsumexp([log p_T + log beta, log p_S + log(1 - beta)])``, never
by adding probabilities. At beta = 0.5 this is the ordinary Jensen–Shannon divergence, symmetric in
(p_S, p_T) and bounded by log 2. Limits (first order in beta, as in the GKD paper / TRL docs, where
"beta = 0 is the KL, beta = 1 the inverse KL")::

    jsd_beta / beta       -> KL(p_T || p_S) = forward_kl   as beta -> 0
    jsd_beta / (1 - beta) -> KL(p_S || p_T) = reverse_kl   as beta -> 1

(``jsd_beta`` itself goes to 0 at both ends, because M collapses onto one of the two distributions.)
Unlike TRL, beta = 0 and beta = 1 are rejected instead of silently switching to the KLs: that
switch makes the loss discontinuous in beta; ask for ``kind="forward_kl"`` / ``"reverse_kl"``.

Saturation: which divergence can move a confidently wrong student
-----------------------------------------------------------------
The JSD is bounded (by the binary entropy of beta, log 2 at beta = 0.5), so it saturates where the
student gives the teacher's token almost no mass. Its gradient w.r.t. the student's logits then dies
like ``p_S(teacher's token) * gap``: at a logit gap of 12 between the student's token and the teacher's
(JSD = log 2 - 2e-5) it is about 5e-5, 27,000 times smaller than the forward KL's, whose gradient is
``p_S - p_T`` (norm about sqrt 2) however confident the student is. The reverse KL dies the same way
(``p_S * (log p_S - log p_T - KL)``). So on a fact a student was taught *wrong* and believes firmly,
only the forward KL transfers what its self-teacher (with the peer's feedback in context) knows.
Measured on the v3 specialists (docs/results/divergence-v3.md): phys's self-teacher with chem's feedback
answers 0.94 of chemistry, phys alone 0.01, and 100 JSD steps do not move it; the paper's JSD assumes
students whose errors are not this confident. Tested in tests/core/test_losses.py.

Top-k with a tail bucket (``topk=k``): for each position take the k token ids where the *teacher* is
most likely, gather both log-distributions at those ids, and add one bucket for "everything else",
``log(1 - sum_{top-k} p) = logsumexp`` of the log-probabilities outside the top-k. That is the exact
complement (no cancellation in ``1 - sum``, which loses all precision once the top-k mass is within
float epsilon of 1). Both p_S and p_T thus become proper distributions over k + 1 outcomes and the
formulas above apply unchanged. With k >= V the tail bucket is empty (probability 0 for both, so it
contributes exactly 0) and the full vocabulary is used; with k = V - 1 the k + 1 outcomes are the
whole vocabulary, so the result equals the full-vocabulary one up to rounding.

Masking and reduction: ``per_token_divergence`` returns D[b, t] for real rollout tokens and exactly 0
at masked positions; logits at masked positions are never read into the loss. ``sequence_loss``
averages over the tokens of each rollout (1/|y|), then over rollouts that have at least one token.

Numerics and memory
===================

* Logits are up-cast to at least float32 per chunk (bf16/fp16 log-softmaxes are too coarse).
  Log-probabilities are clamped below at the dtype's most negative finite number, so logits of -inf
  (e.g. a padded vocabulary) give 0 * finite = 0 terms instead of NaN. Tiny negative values that only
  rounding can produce (e.g. identical inputs under JSD) are clamped to 0 in the returned values.
* Only masked-in positions are computed, ``chunk_size`` of them at a time (fewer when the vocabulary
  is large: ``CHUNK_ELEMENTS``), so the largest temporaries are a handful of ``[chunk_size, V]``
  tensors. To keep that true in the backward pass as well, the gradient of each chunk w.r.t. its
  student logits is computed in the forward pass (in closed form over the full vocabulary, see
  ``_full_vocab_divergence``; through one small autograd graph per chunk for top-k, freed
  immediately) and written into a single ``[n_tokens, V]`` buffer; the backward
  pass just scales that buffer by the incoming per-token gradient. Plain autograd over a Python loop of
  chunks would keep every chunk's intermediates alive (several times the size of the logits) until
  backward. Double backward is not supported. When no gradient is needed (``torch.no_grad()`` or
  student logits without ``requires_grad``) nothing is kept at all.
* Chunking changes nothing numerically: each row is processed by the same row-wise operations
  whatever chunk it falls into.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["KINDS", "per_token_divergence", "sequence_loss"]

KINDS: tuple[str, ...] = ("jsd", "forward_kl", "reverse_kl")
#: A chunk holds at most this many logits (and at least MIN_CHUNK_ROWS positions): with a 49k vocabulary,
#: 256-row chunks (50 MB temporaries, each freshly mapped and page-faulted by the allocator) made the
#: loss 1.6x slower than 16-32-row ones; at 4k, 128 rows was the fastest measured.
CHUNK_ELEMENTS = 1 << 19
MIN_CHUNK_ROWS = 16


# --------------------------------------------------------------------------------------------------
# Row-wise maths on [N, V] (or [N, k+1]) log-distributions
# --------------------------------------------------------------------------------------------------


def _divergence_from_logprobs(
    student_logp_NK: torch.Tensor, teacher_logp_NK: torch.Tensor, kind: str, beta: float
) -> torch.Tensor:
    """D(p_S, p_T) per row of two normalised log-distributions over the last dim. Returns [N]."""
    if kind == "forward_kl":
        return (teacher_logp_NK.exp() * (teacher_logp_NK - student_logp_NK)).sum(-1)
    if kind == "reverse_kl":
        return (student_logp_NK.exp() * (student_logp_NK - teacher_logp_NK)).sum(-1)
    # Generalized JSD: M = beta * p_T + (1 - beta) * p_S, mixed in log space.
    mixture_logp_NK = torch.logaddexp(teacher_logp_NK + math.log(beta), student_logp_NK + math.log1p(-beta))
    kl_teacher_N = (teacher_logp_NK.exp() * (teacher_logp_NK - mixture_logp_NK)).sum(-1)
    kl_student_N = (student_logp_NK.exp() * (student_logp_NK - mixture_logp_NK)).sum(-1)
    return beta * kl_teacher_N + (1.0 - beta) * kl_student_N


def _log_softmax(logits_NV: torch.Tensor, temperature: float, inplace: bool = False) -> torch.Tensor:
    """``inplace``: clamp the fresh log-softmax in place (outside autograd only: its backward reads it)."""
    compute_dtype = torch.promote_types(logits_NV.dtype, torch.float32)
    logits_NV = logits_NV.to(compute_dtype)
    if temperature != 1.0:
        logits_NV = logits_NV / temperature
    logp_NV = F.log_softmax(logits_NV, dim=-1)
    # -inf logits (masked vocabulary) -> most negative finite number: p = 0 and 0 * finite = 0.
    lowest = torch.finfo(compute_dtype).min
    return logp_NV.clamp_min_(lowest) if inplace else logp_NV.clamp_min(lowest)


def _topk_with_tail(
    logp_NV: torch.Tensor, topk_ids_NK: torch.Tensor
) -> torch.Tensor:
    """[N, V] log-probs -> [N, k+1]: the log-probs at ``topk_ids`` plus log(mass of everything else)."""
    top_logp_NK = logp_NV.gather(-1, topk_ids_NK)
    rest_logp_NV = logp_NV.scatter(-1, topk_ids_NK, float("-inf"))
    tail_logp_N1 = torch.logsumexp(rest_logp_NV, dim=-1, keepdim=True)
    return torch.cat([top_logp_NK, tail_logp_N1], dim=-1)


def _chunk_divergence(
    student_logits_NV: torch.Tensor,
    teacher_logits_NV: torch.Tensor,
    kind: str,
    beta: float,
    topk: int | None,
    temperature: float,
) -> torch.Tensor:
    """Divergence per row for one chunk of positions. Differentiable w.r.t. the student rows."""
    with torch.no_grad():
        teacher_logp_NV = _log_softmax(teacher_logits_NV, temperature)
    student_logp_NV = _log_softmax(student_logits_NV, temperature)
    vocab = student_logp_NV.shape[-1]
    if topk is not None and topk < vocab:
        with torch.no_grad():
            topk_ids_NK = teacher_logp_NV.topk(topk, dim=-1).indices
            teacher_logp_NV = _topk_with_tail(teacher_logp_NV, topk_ids_NK)
        student_logp_NV = _topk_with_tail(student_logp_NV, topk_ids_NK)
    return _divergence_from_logprobs(student_logp_NV, teacher_logp_NV, kind, beta)


# --------------------------------------------------------------------------------------------------
# Chunked evaluation, with a memory-bounded backward
# --------------------------------------------------------------------------------------------------


def _chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)


def _rowdot(a_NV: torch.Tensor, b_NV: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim of a * b, row by row, in one pass (a batched dot product, not a product tensor
    then a sum)."""
    return torch.bmm(a_NV.unsqueeze(1), b_NV.unsqueeze(2)).view(-1)


def _full_vocab_divergence(
    student_logits_NV: torch.Tensor, teacher_logits_NV: torch.Tensor, kind: str, beta: float, temperature: float,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D per row over the full vocabulary and, when ``need_grad``, its gradient w.r.t. the student logits,
    in closed form (no autograd graph). With s = log p_S, t = log p_T, z the student logits and T the
    temperature, every kind has dD/dp_S(v) = g_v up to a constant that the softmax's Jacobian cancels, so
    dD/dz = p_S * (g - <p_S, g>) / T:

    * jsd: g = (1 - beta) (s - m) with m = log M (the terms through M sum to 1 - 1 = 0);
    * reverse_kl: g = s - t, and <p_S, g> = D;
    * forward_kl: dD/dz = (p_S - p_T) / T directly.

    The JSD's mixture is formed from the probabilities, M = lerp(p_S, p_T, beta), and its log taken once
    (clamped at the dtype's smallest normal number, where both probabilities underflow and their terms
    are 0 anyway), rather than by ``logaddexp`` of the log-probabilities. Sums of products are batched dot
    products, and temporaries are reused in place: about a dozen passes over [N, V], measured 1.55x
    faster than the same maths through ``logaddexp`` and ``(a * b).sum(-1)`` at N = 256, V = 49,152 (and
    several times faster than autograd through each operation)."""
    s = _log_softmax(student_logits_NV, temperature, inplace=True)
    t = _log_softmax(teacher_logits_NV.detach(), temperature, inplace=True)
    ps = s.exp()
    if kind == "forward_kl":
        pt = t.exp()
        div = _rowdot(pt, t.sub_(s))
        grad = ps.sub_(pt) if need_grad else None
    else:
        if kind == "reverse_kl":
            g = s.sub_(t)
            div = ps_g = _rowdot(ps, g)
        else:
            pt = t.exp()
            m = torch.lerp(ps, pt, beta).clamp_min_(torch.finfo(s.dtype).tiny).log_()
            div_t = _rowdot(pt, t.sub_(m))
            g = s.sub_(m).mul_(1.0 - beta)
            ps_g = _rowdot(ps, g)
            div = beta * div_t + ps_g
        grad = ps.mul_(g.sub_(ps_g.unsqueeze(-1))) if need_grad else None
    if grad is not None and temperature != 1.0:
        grad = grad.div_(temperature)
    return div, grad


def _chunk_divergence_and_grad(
    student_CV: torch.Tensor, teacher_CV: torch.Tensor, kind: str, beta: float, topk: int | None,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """D per row of one chunk and its gradient w.r.t. the student rows: in closed form over the full
    vocabulary, through a small autograd graph for top-k (the tail bucket's gradient is not worth a
    closed form: top-k is the cheap mode already)."""
    if topk is None or topk >= student_CV.shape[-1]:
        return _full_vocab_divergence(student_CV, teacher_CV, kind, beta, temperature, need_grad=True)
    with torch.enable_grad():
        student_CV = student_CV.detach().requires_grad_(True)
        div_C = _chunk_divergence(student_CV, teacher_CV, kind, beta, topk, temperature)
        (grad_CV,) = torch.autograd.grad(div_C.sum(), student_CV)
    return div_C.detach(), grad_CV


def _row_chunks(flat_NV: torch.Tensor, rows_M: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``rows_M[start:stop]`` of ``flat_NV``: a view when every row is selected, else a copy."""
    if rows_M.numel() == flat_NV.shape[0]:
        return flat_NV[start:stop]
    return flat_NV.index_select(0, rows_M[start:stop])


class _ChunkedDivergence(torch.autograd.Function):
    """D per selected row of flattened logits; gradient w.r.t. the student logits only.

    forward(student_flat [N, V], teacher_flat [N, V] (detached), rows [M] long, *options) -> [N] with
    zeros outside ``rows``. The per-row gradient is computed chunk by chunk in forward and kept in
    one [M, V] buffer (student dtype); backward scales it by grad_output[rows].
    """

    @staticmethod
    def forward(ctx, student_flat_NV, teacher_flat_NV, rows_M, kind, beta, topk, chunk_size, temperature):
        n_rows = rows_M.numel()
        out_N = student_flat_NV.new_zeros(
            student_flat_NV.shape[0], dtype=torch.promote_types(student_flat_NV.dtype, torch.float32)
        )
        grad_MV = student_flat_NV.new_empty((n_rows, student_flat_NV.shape[-1]))
        for start, stop in _chunks(n_rows, chunk_size):
            div_C, grad_CV = _chunk_divergence_and_grad(
                _row_chunks(student_flat_NV, rows_M, start, stop).detach(),
                _row_chunks(teacher_flat_NV, rows_M, start, stop), kind, beta, topk, temperature)
            grad_MV[start:stop] = grad_CV
            out_N[rows_M[start:stop]] = div_C.clamp_min(0.0)
        ctx.save_for_backward(rows_M, grad_MV)
        ctx.student_shape = student_flat_NV.shape
        ctx.student_dtype = student_flat_NV.dtype
        return out_N

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out_N):
        rows_M, grad_MV = ctx.saved_tensors
        scale_M1 = grad_out_N.index_select(0, rows_M).unsqueeze(-1).to(grad_MV.dtype)
        if rows_M.numel() == ctx.student_shape[0]:  # every row: scale the buffer in place, no copy
            return grad_MV.mul_(scale_M1).to(ctx.student_dtype), None, None, None, None, None, None, None
        grad_student_NV = grad_MV.new_zeros(ctx.student_shape, dtype=ctx.student_dtype)
        grad_student_NV.index_copy_(0, rows_M, grad_MV * scale_M1)
        return grad_student_NV, None, None, None, None, None, None, None


def _chunked_divergence_no_grad(student_flat_NV, teacher_flat_NV, rows_M, kind, beta, topk, chunk_size, temperature):
    out_N = student_flat_NV.new_zeros(
        student_flat_NV.shape[0], dtype=torch.promote_types(student_flat_NV.dtype, torch.float32)
    )
    with torch.no_grad():
        for start, stop in _chunks(rows_M.numel(), chunk_size):
            student_CV = _row_chunks(student_flat_NV, rows_M, start, stop)
            teacher_CV = _row_chunks(teacher_flat_NV, rows_M, start, stop)
            if topk is None or topk >= student_CV.shape[-1]:
                div_C, _ = _full_vocab_divergence(student_CV, teacher_CV, kind, beta, temperature, need_grad=False)
            else:
                div_C = _chunk_divergence(student_CV, teacher_CV, kind, beta, topk, temperature)
            out_N[rows_M[start:stop]] = div_C.clamp_min(0.0)
    return out_N


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def per_token_divergence(
    student_logits_BTV: torch.Tensor,
    teacher_logits_BTV: torch.Tensor,
    mask_BT: torch.Tensor,
    kind: str = "jsd",
    beta: float = 0.5,
    topk: int | None = None,
    chunk_size: int = 256,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Divergence between student and self-teacher next-token distributions, per token.

    Args:
        student_logits_BTV: [B, T, V] student logits; the only tensor gradients flow into.
        teacher_logits_BTV: [B, T, V] self-teacher logits, aligned position by position with the
            student's (both predict the same rollout token). Detached here.
        mask_BT: [B, T] bool or 0/1: True where the position predicts a real rollout token.
        kind: ``"jsd"`` (generalized JSD with ``beta``), ``"forward_kl"`` = KL(teacher || student) or
            ``"reverse_kl"`` = KL(student || teacher). See the module docstring.
        beta: JSD interpolation, 0 < beta < 1; M = beta * p_teacher + (1 - beta) * p_student.
            Ignored by the KLs.
        topk: None for the full vocabulary; k for the teacher's top-k tokens plus one tail bucket.
        chunk_size: masked-in positions processed at once.
        temperature: both logits are divided by it before the softmax.

    Returns:
        [B, T] float tensor (float32 for half-precision inputs), >= 0, exactly 0 at masked-out
        positions, differentiable w.r.t. ``student_logits_BTV`` only.
    """
    _check_divergence_args(student_logits_BTV, teacher_logits_BTV, mask_BT, kind, beta, topk, chunk_size,
                           temperature)
    B, T, V = student_logits_BTV.shape
    topk = None if topk is None else int(topk)
    chunk_size = min(int(chunk_size), max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // max(V, 1)))
    student_flat_NV = student_logits_BTV.reshape(B * T, V)
    teacher_flat_NV = teacher_logits_BTV.detach().reshape(B * T, V)
    rows_M = mask_BT.reshape(-1).to(device=student_logits_BTV.device).bool().nonzero().squeeze(-1)
    options = (kind, float(beta), topk, chunk_size, float(temperature))

    if torch.is_grad_enabled() and student_logits_BTV.requires_grad:
        out_N = _ChunkedDivergence.apply(student_flat_NV, teacher_flat_NV, rows_M, *options)
    else:
        out_N = _chunked_divergence_no_grad(student_flat_NV, teacher_flat_NV, rows_M, *options)
    return out_N.reshape(B, T)


def _check_divergence_args(student_logits_BTV, teacher_logits_BTV, mask_BT, kind, beta, topk, chunk_size,
                           temperature) -> None:
    """``per_token_divergence``'s arguments, each refused with a message naming it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "jsd" and not 0.0 < beta < 1.0:
        raise ValueError(
            f"beta must satisfy 0 < beta < 1 for the generalized JSD, got {beta}; "
            "use kind='forward_kl' (the beta -> 0 direction) or kind='reverse_kl' (beta -> 1)"
        )
    if topk is not None and (isinstance(topk, bool) or int(topk) != topk or topk < 1):
        raise ValueError(f"topk must be None or an integer >= 1, got {topk!r}")
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if not (temperature > 0.0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    if student_logits_BTV.dim() != 3:
        raise ValueError(f"student logits must be [B, T, V], got shape {tuple(student_logits_BTV.shape)}")
    if teacher_logits_BTV.shape != student_logits_BTV.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits_BTV.shape)} must have the student's shape "
            f"{tuple(student_logits_BTV.shape)}"
        )
    if mask_BT.shape != student_logits_BTV.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(student_logits_BTV.shape[:2])}, got {tuple(mask_BT.shape)}")


def sequence_loss(per_token_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens of each sequence (1/|y|), then mean over sequences with >= 1 token.

    Values at masked-out positions are ignored (even NaN). Returns a 0-dim tensor; when no sequence
    has a token it is 0 and still attached to ``per_token_BT``'s graph, so ``backward()`` works and
    gives zero gradients.
    """
    if per_token_BT.shape != mask_BT.shape or per_token_BT.dim() != 2:
        raise ValueError(
            f"per_token and mask must both be [B, T], got {tuple(per_token_BT.shape)} and {tuple(mask_BT.shape)}"
        )
    mask_BT = mask_BT.to(device=per_token_BT.device).bool()
    masked_BT = torch.where(mask_BT, per_token_BT, torch.zeros_like(per_token_BT))
    n_tokens_B = mask_BT.sum(-1)
    has_tokens_B = n_tokens_B > 0
    per_sequence_B = masked_BT.sum(-1) / n_tokens_B.clamp_min(1).to(masked_BT.dtype)
    n_sequences = has_tokens_B.sum()
    if int(n_sequences) == 0:
        return masked_BT.sum() * 0.0
    return torch.where(has_tokens_B, per_sequence_B, torch.zeros_like(per_sequence_B)).sum() / n_sequences.to(
        per_sequence_B.dtype
    )
