"""Property tests for opcod_core.losses (DESIGN.md §2 step 7, §8: TRL-style loss tests)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from opcod_core.losses import per_token_divergence, sequence_loss

KINDS = ("jsd", "forward_kl", "reverse_kl")
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)


def make_logits(seed: int, B: int = 3, T: int = 5, V: int = 11, scale: float = 3.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(B, T, V, generator=gen, dtype=dtype) * scale
    teacher = torch.randn(B, T, V, generator=gen, dtype=dtype) * scale
    return student, teacher


def make_mask(seed: int, B: int = 3, T: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    mask = torch.rand(B, T, generator=gen) < 0.7
    mask[0, 0] = True  # at least one real token
    return mask


def full_mask(B: int = 3, T: int = 5) -> torch.Tensor:
    return torch.ones(B, T, dtype=torch.bool)


def trl_generalized_jsd(student_logits, teacher_logits, beta):
    """Independent reference: TRL GKDTrainer.generalized_jsd_loss, reduction='none', summed over V."""
    s = F.log_softmax(student_logits, dim=-1)
    t = F.log_softmax(teacher_logits, dim=-1)
    beta_t = torch.tensor(beta, dtype=s.dtype)
    mixture = torch.logsumexp(torch.stack([s + torch.log(1 - beta_t), t + torch.log(beta_t)]), dim=0)
    kl_teacher = F.kl_div(mixture, t, reduction="none", log_target=True)
    kl_student = F.kl_div(mixture, s, reduction="none", log_target=True)
    return (beta_t * kl_teacher + (1 - beta_t) * kl_student).sum(-1)


seeds = st.integers(min_value=0, max_value=2**31 - 1)
kinds = st.sampled_from(KINDS)
topks = st.sampled_from([None, 1, 3, 10])


# ---------------------------------------------------------------------------------------------
# Basic properties
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(seed=seeds, kind=kinds, topk=topks)
def test_zero_on_identical_inputs(seed, kind, topk):
    logits, _ = make_logits(seed)
    out = per_token_divergence(logits, logits.clone(), full_mask(), kind=kind, topk=topk)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-12, rtol=0)


@PROPERTY
@given(seed=seeds, kind=kinds, topk=topks, beta=st.floats(0.01, 0.99), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_non_negative_and_finite(seed, kind, topk, beta, scale):
    student, teacher = make_logits(seed, scale=scale)
    out = per_token_divergence(student, teacher, full_mask(), kind=kind, beta=beta, topk=topk)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_identical_inputs_in_float32_give_exact_non_negative_zeros(kind):
    """Rounding in log M can make float32 JSD of identical rows ~ -1e-8; outputs must still be >= 0."""
    logits = torch.randn(8, 50, 1000, generator=torch.Generator().manual_seed(0)) * 3
    out = per_token_divergence(logits, logits.clone(), torch.ones(8, 50, dtype=torch.bool), kind=kind, beta=0.3)
    assert (out >= 0).all() and out.max() < 1e-6


@PROPERTY
@given(seed=seeds, topk=st.sampled_from([None, 10]))
def test_jsd_symmetric_at_half(seed, topk):
    student, teacher = make_logits(seed)
    a = per_token_divergence(student, teacher, full_mask(), kind="jsd", beta=0.5, topk=topk)
    b = per_token_divergence(teacher, student, full_mask(), kind="jsd", beta=0.5, topk=topk)
    # top-k with k = V - 1 is the whole vocabulary, so it does not depend on whose top-k is taken.
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert (a <= math.log(2) + 1e-12).all()


def test_jsd_not_symmetric_away_from_half():
    student, teacher = make_logits(3)
    a = per_token_divergence(student, teacher, full_mask(), kind="jsd", beta=0.2)
    b = per_token_divergence(teacher, student, full_mask(), kind="jsd", beta=0.2)
    assert not torch.allclose(a, b)
    # ... but swapping the roles together with beta -> 1 - beta is a symmetry.
    c = per_token_divergence(teacher, student, full_mask(), kind="jsd", beta=0.8)
    torch.testing.assert_close(a, c, atol=1e-12, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# Agreement with torch.nn.functional.kl_div and TRL's formula; limits of the JSD
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(seed=seeds, temperature=st.sampled_from([0.5, 1.0, 2.0]))
def test_forward_and_reverse_kl_match_kl_div(seed, temperature):
    student, teacher = make_logits(seed)
    s = F.log_softmax(student / temperature, dim=-1)
    t = F.log_softmax(teacher / temperature, dim=-1)
    # F.kl_div(input, target) = sum target * (log target - input) = KL(target || input)
    forward_ref = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    reverse_ref = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    mask = full_mask()
    fwd = per_token_divergence(student, teacher, mask, kind="forward_kl", temperature=temperature)
    rev = per_token_divergence(student, teacher, mask, kind="reverse_kl", temperature=temperature)
    torch.testing.assert_close(fwd, forward_ref, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(rev, reverse_ref, atol=1e-10, rtol=1e-8)


@PROPERTY
@given(seed=seeds, beta=st.sampled_from([0.1, 0.5, 0.9]))
def test_jsd_matches_trl_reference(seed, beta):
    student, teacher = make_logits(seed)
    out = per_token_divergence(student, teacher, full_mask(), kind="jsd", beta=beta)
    torch.testing.assert_close(out, trl_generalized_jsd(student, teacher, beta), atol=1e-10, rtol=1e-8)


def test_jsd_limits_are_the_kls():
    """jsd_beta / beta -> KL(p_T||p_S) as beta -> 0; jsd_beta / (1-beta) -> KL(p_S||p_T) as beta -> 1."""
    student, teacher = make_logits(7, scale=1.0)
    mask = full_mask()
    forward = per_token_divergence(student, teacher, mask, kind="forward_kl")
    reverse = per_token_divergence(student, teacher, mask, kind="reverse_kl")
    previous_errors = None
    for eps in (1e-2, 1e-3, 1e-4, 1e-5):
        low = per_token_divergence(student, teacher, mask, kind="jsd", beta=eps) / eps
        high = per_token_divergence(student, teacher, mask, kind="jsd", beta=1 - eps) / eps
        errors = ((low - forward).abs().max().item(), (high - reverse).abs().max().item())
        if previous_errors is not None:  # first-order convergence: error shrinks ~10x per step
            assert errors[0] < previous_errors[0] / 5 and errors[1] < previous_errors[1] / 5
        previous_errors = errors
    torch.testing.assert_close(low, forward, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(high, reverse, rtol=1e-3, atol=1e-6)
    # and the JSD itself vanishes at both ends
    tiny = per_token_divergence(student, teacher, mask, kind="jsd", beta=1e-9)
    assert tiny.max() < 1e-7


def _confident_disagreement(gap: float, kind: str, beta: float = 0.5) -> tuple[float, float]:
    """(divergence, gradient norm w.r.t. the student's logits) when the student puts logit ``gap`` on one
    token and the teacher the same gap on another: a confidently wrong student, the tutee's state on a fact
    its warm-up taught wrong (docs/results/divergence-v3.md)."""
    student = torch.tensor([[[gap, 0.0, -5.0]]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[[0.0, gap, -5.0]]], dtype=torch.float64)
    d = per_token_divergence(student, teacher, torch.ones(1, 1, dtype=torch.bool), kind=kind, beta=beta)
    d.sum().backward()
    return d.item(), student.grad.norm().item()


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_gradient_vanishes_on_a_confidently_wrong_student_and_forward_kl_does_not(beta):
    """The JSD is bounded (by log 2 at beta 0.5), so once the student gives the teacher's token almost no
    mass its gradient dies like p_S(teacher's token) * gap; the forward KL's gradient w.r.t. the logits is
    p_S - p_T, of size about sqrt(2) however confident the student is."""
    jsd = {g: _confident_disagreement(g, "jsd", beta) for g in (4.0, 8.0, 12.0, 16.0)}
    grads = [jsd[g][1] for g in sorted(jsd)]
    assert all(b < a / 5 for a, b in zip(grads, grads[1:]))      # decays at least 5x per 4 logits of gap
    assert jsd[12.0][1] < 1e-3
    if beta == 0.5:
        assert jsd[12.0][0] == pytest.approx(math.log(2), abs=1e-4)
    for g in (4.0, 12.0, 16.0):
        value, grad = _confident_disagreement(g, "forward_kl")
        assert grad > 1.0 and value > g - 1
    assert _confident_disagreement(12.0, "forward_kl")[1] > 1000 * jsd[12.0][1]


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(seed=seeds, kind=kinds, topk=topks)
def test_padding_ignored(seed, kind, topk):
    student, teacher = make_logits(seed)
    mask = make_mask(seed)
    out = per_token_divergence(student, teacher, mask, kind=kind, topk=topk)
    assert (out[~mask] == 0).all()

    gen = torch.Generator().manual_seed(seed + 2)
    student2, teacher2 = student.clone(), teacher.clone()
    student2[~mask] = torch.randn(int((~mask).sum()), 11, generator=gen, dtype=student.dtype) * 100
    teacher2[~mask] = float("nan")  # never read
    out2 = per_token_divergence(student2, teacher2, mask, kind=kind, topk=topk)
    assert torch.equal(out, out2)


def test_mask_accepts_zero_one_ints_and_all_masked():
    student, teacher = make_logits(0)
    mask = make_mask(0)
    a = per_token_divergence(student, teacher, mask)
    b = per_token_divergence(student, teacher, mask.long())
    assert torch.equal(a, b)
    student.requires_grad_(True)
    none = per_token_divergence(student, teacher, torch.zeros(3, 5, dtype=torch.bool))
    assert torch.equal(none, torch.zeros(3, 5, dtype=none.dtype))
    none.sum().backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


# ---------------------------------------------------------------------------------------------
# Chunking and top-k
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topk", [None, 4])
def test_chunked_equals_unchunked(kind, topk):
    student, teacher = make_logits(11, B=4, T=7, V=13, dtype=torch.float32)
    mask = make_mask(11, B=4, T=7)
    n = int(mask.sum())
    reference = per_token_divergence(student, teacher, mask, kind=kind, topk=topk, chunk_size=10_000)
    student_leaf = student.clone().requires_grad_(True)
    per_token_divergence(student_leaf, teacher, mask, kind=kind, topk=topk, chunk_size=10_000).sum().backward()
    reference_grad = student_leaf.grad
    for chunk_size in (1, 2, 3, 7, n - 1, n, n + 1, 4 * 7 * 10):
        out = per_token_divergence(student, teacher, mask, kind=kind, topk=topk, chunk_size=chunk_size)
        torch.testing.assert_close(out, reference, atol=1e-7, rtol=1e-6)
        leaf = student.clone().requires_grad_(True)
        out_grad = per_token_divergence(leaf, teacher, mask, kind=kind, topk=topk, chunk_size=chunk_size)
        torch.testing.assert_close(out_grad.detach(), reference, atol=1e-7, rtol=1e-6)
        out_grad.sum().backward()
        torch.testing.assert_close(leaf.grad, reference_grad, atol=1e-7, rtol=1e-6)


@PROPERTY
@given(seed=seeds, kind=kinds)
def test_topk_whole_vocabulary_matches_full(seed, kind):
    V = 11
    student, teacher = make_logits(seed, V=V)
    mask = full_mask()
    full = per_token_divergence(student, teacher, mask, kind=kind)
    for k in (V - 1, V, V + 5):
        out = per_token_divergence(student, teacher, mask, kind=kind, topk=k)
        torch.testing.assert_close(out, full, atol=1e-10, rtol=1e-8)


def test_topk_tail_bucket_is_a_proper_distribution():
    """Top-k = teacher's top-k ids plus a tail bucket, checked against an explicit construction."""
    from opcod_core.losses import _topk_with_tail

    student, teacher = make_logits(5, V=20)
    s = F.log_softmax(student, -1).reshape(-1, 20)
    t = F.log_softmax(teacher, -1).reshape(-1, 20)
    k = 4
    ids = t.topk(k, dim=-1).indices
    s_k, t_k = _topk_with_tail(s, ids), _topk_with_tail(t, ids)
    for d in (s_k, t_k):
        torch.testing.assert_close(d.exp().sum(-1), torch.ones(d.shape[0], dtype=d.dtype))
    torch.testing.assert_close(t_k[:, :k], t.topk(k, dim=-1).values)
    expected_tail = torch.log1p(-s.gather(-1, ids).exp().sum(-1))
    torch.testing.assert_close(s_k[:, -1], expected_tail)

    out = per_token_divergence(student, teacher, full_mask(), kind="forward_kl", topk=k).reshape(-1)
    ref = F.kl_div(s_k, t_k, reduction="none", log_target=True).sum(-1)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-8)
    # Coarse-graining never increases a KL (data-processing inequality).
    full = per_token_divergence(student, teacher, full_mask(), kind="forward_kl").reshape(-1)
    assert (out <= full + 1e-12).all()


def test_topk_is_chosen_by_the_teacher():
    V = 6
    student = torch.zeros(1, 1, V, dtype=torch.float64)
    student[0, 0, 0] = 5.0  # student's favourite: token 0
    teacher = torch.zeros(1, 1, V, dtype=torch.float64)
    teacher[0, 0, 3] = 5.0  # teacher's favourite: token 3
    mask = full_mask(1, 1)
    out = per_token_divergence(student, teacher, mask, kind="forward_kl", topk=1)
    s = F.log_softmax(student[0, 0], -1)
    t = F.log_softmax(teacher[0, 0], -1)
    s2 = torch.stack([s[3], torch.log1p(-s[3].exp())])
    t2 = torch.stack([t[3], torch.log1p(-t[3].exp())])
    ref = (t2.exp() * (t2 - s2)).sum()
    torch.testing.assert_close(out[0, 0], ref)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topk", [None, 3])
def test_gradient_flows_only_into_student(kind, topk):
    student, teacher = make_logits(2, dtype=torch.float32)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    mask = make_mask(2)
    out = per_token_divergence(student, teacher, mask, kind=kind, topk=topk, chunk_size=4)
    sequence_loss(out, mask).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0
    assert (student.grad[~mask] == 0).all()


def naive_reference(student, teacher, mask, kind, beta, topk):
    """Unchunked, plain-autograd reference written independently of the module."""
    s = F.log_softmax(student, -1)
    t = F.log_softmax(teacher.detach(), -1)
    if topk is not None:
        ids = t.topk(topk, dim=-1).indices
        s_top, t_top = s.gather(-1, ids), t.gather(-1, ids)
        s = torch.cat([s_top, torch.log1p(-s_top.exp().sum(-1, keepdim=True))], -1)
        t = torch.cat([t_top, torch.log1p(-t_top.exp().sum(-1, keepdim=True))], -1)
    if kind == "forward_kl":
        d = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    elif kind == "reverse_kl":
        d = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    else:
        m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), 0)
        d = beta * F.kl_div(m, t, reduction="none", log_target=True).sum(-1) + (1 - beta) * F.kl_div(
            m, s, reduction="none", log_target=True
        ).sum(-1)
    return torch.where(mask.bool(), d, torch.zeros_like(d))


@pytest.mark.parametrize(
    ("kind", "beta"),
    [("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9), ("forward_kl", 0.5), ("reverse_kl", 0.5)],
)
@pytest.mark.parametrize("topk", [None, 3])
def test_gradient_matches_plain_autograd(kind, topk, beta):
    student, teacher = make_logits(4)
    mask = make_mask(4)
    weights = torch.randn(3, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    a = student.clone().requires_grad_(True)
    out = per_token_divergence(a, teacher, mask, kind=kind, beta=beta, topk=topk, chunk_size=3)
    (out * weights).sum().backward()

    b = student.clone().requires_grad_(True)
    ref = naive_reference(b, teacher, mask, kind, beta, topk)
    (ref * weights).sum().backward()

    torch.testing.assert_close(out.detach(), ref.detach(), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topk", [None, 3])
def test_gradient_with_temperature_and_every_row_selected(kind, topk):
    """The closed-form gradient (full vocabulary) and the autograd one (top-k) against plain autograd on
    logits divided by the temperature, with every position masked in (the path that scales the gradient
    buffer in place)."""
    student, teacher = make_logits(21)
    mask = full_mask()
    weights = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = student.clone().requires_grad_(True)
    (per_token_divergence(a, teacher, mask, kind=kind, beta=0.3, topk=topk, chunk_size=4, temperature=1.7)
     * weights).sum().backward()
    b = student.clone().requires_grad_(True)
    (naive_reference(b / 1.7, teacher / 1.7, mask, kind, 0.3, topk) * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topk", [None, 2])
def test_gradcheck(kind, topk):
    student, teacher = make_logits(6, B=2, T=3, V=5, scale=1.0)
    mask = torch.tensor([[True, True, False], [False, True, True]])
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: per_token_divergence(x, teacher, mask, kind=kind, beta=0.3, topk=topk, chunk_size=2),
        (student,),
    )


def test_no_grad_path_matches_grad_path():
    student, teacher = make_logits(8, dtype=torch.float32)
    mask = make_mask(8)
    with torch.no_grad():
        a = per_token_divergence(student.clone().requires_grad_(True), teacher, mask)
    b = per_token_divergence(student.clone().requires_grad_(True), teacher, mask)
    assert not a.requires_grad and b.requires_grad
    assert torch.equal(a, b.detach())


# ---------------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topk", [None, 3])
def test_large_logits_are_finite(kind, topk):
    student, teacher = make_logits(10, dtype=torch.float32, scale=1.0)
    student = student * 1e4
    teacher = teacher * 1e4
    student.requires_grad_(True)
    out = per_token_divergence(student, teacher, full_mask(), kind=kind, topk=topk)
    assert torch.isfinite(out).all() and (out >= 0).all()
    out.sum().backward()
    assert torch.isfinite(student.grad).all()
    same = per_token_divergence(teacher, teacher.clone(), full_mask(), kind=kind, topk=topk)
    assert torch.isfinite(same).all() and same.abs().max() < 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_minus_inf_logits_in_a_padded_vocabulary(kind):
    student, teacher = make_logits(12, dtype=torch.float32)
    student[..., -2:] = float("-inf")
    teacher[..., -2:] = float("-inf")
    student.requires_grad_(True)
    out = per_token_divergence(student, teacher, full_mask(), kind=kind)
    ref = per_token_divergence(student[..., :-2].detach(), teacher[..., :-2], full_mask(), kind=kind)
    torch.testing.assert_close(out.detach(), ref)
    out.sum().backward()
    assert torch.isfinite(student.grad).all()


def test_half_precision_inputs_computed_in_float32():
    student, teacher = make_logits(13, dtype=torch.float32)
    ref = per_token_divergence(student, teacher, full_mask())
    bf = student.to(torch.bfloat16).requires_grad_(True)
    out = per_token_divergence(bf, teacher.to(torch.bfloat16), full_mask())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)
    out.sum().backward()
    assert bf.grad.dtype == torch.bfloat16 and torch.isfinite(bf.grad.float()).all()


def test_temperature_divides_both_logits():
    student, teacher = make_logits(14)
    a = per_token_divergence(student, teacher, full_mask(), temperature=2.0)
    b = per_token_divergence(student / 2, teacher / 2, full_mask())
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "tvd"},
        {"kind": "jsd", "beta": 0.0},
        {"kind": "jsd", "beta": 1.0},
        {"topk": 0},
        {"chunk_size": 0},
        {"temperature": 0.0},
    ],
)
def test_invalid_arguments(kwargs):
    student, teacher = make_logits(0)
    with pytest.raises(ValueError):
        per_token_divergence(student, teacher, full_mask(), **kwargs)


def test_shape_mismatch_rejected():
    student, teacher = make_logits(0)
    with pytest.raises(ValueError):
        per_token_divergence(student, teacher[..., :-1], full_mask())
    with pytest.raises(ValueError):
        per_token_divergence(student, teacher, full_mask(3, 4))


# ---------------------------------------------------------------------------------------------
# sequence_loss
# ---------------------------------------------------------------------------------------------


def test_sequence_loss_averages_per_sequence_then_over_sequences():
    per_token = torch.tensor(
        [
            [1.0, 2.0, 3.0, 99.0],  # 3 tokens -> mean 2
            [10.0, 99.0, 99.0, 99.0],  # 1 token -> mean 10
            [99.0, 99.0, 99.0, 99.0],  # no tokens -> excluded
        ],
        requires_grad=True,
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    loss = sequence_loss(per_token, mask)
    torch.testing.assert_close(loss, torch.tensor(6.0))
    loss.backward()
    expected = torch.tensor(
        [[1 / 6, 1 / 6, 1 / 6, 0.0], [1 / 2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
    )
    torch.testing.assert_close(per_token.grad, expected)


def test_sequence_loss_is_not_a_token_mean():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 4, [True, False, False, False]])
    assert sequence_loss(per_token, mask).item() == pytest.approx(3.0)  # token mean would be 1.8


def test_sequence_loss_ignores_nan_at_masked_positions():
    per_token = torch.tensor([[1.0, float("nan")], [3.0, float("inf")]])
    mask = torch.tensor([[True, False], [True, False]])
    assert sequence_loss(per_token, mask).item() == pytest.approx(2.0)


def test_sequence_loss_empty_returns_zero_with_graph():
    per_token = torch.ones(2, 3, requires_grad=True)
    loss = sequence_loss(per_token, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(per_token.grad, torch.zeros(2, 3))


def test_end_to_end_loss_backward():
    student, teacher = make_logits(15, dtype=torch.float32)
    student.requires_grad_(True)
    mask = make_mask(15)
    loss = sequence_loss(per_token_divergence(student, teacher, mask, topk=4, chunk_size=2), mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(student.grad).all()
