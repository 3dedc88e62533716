"""token_kl: full-vocabulary KL that is never negative yet keeps the true value and gradient."""

from __future__ import annotations

import pytest
import torch

from t2bench.generation import token_kl

DIRECTIONS = ["policy_ref", "ref_policy"]


def naive(logp_policy, logp_ref, direction):
    """The plain sum Σ p·(log p − log q), which may round below zero."""
    a, b = (logp_policy, logp_ref) if direction == "policy_ref" else (logp_ref, logp_policy)
    return (a.exp() * (a - b)).sum(-1)


def true_kl(logits_p, logits_q):
    """KL(p‖q) in float64 from logits, the reference value."""
    lp = torch.log_softmax(logits_p.double(), -1)
    lq = torch.log_softmax(logits_q.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_kl_is_zero_not_negative_when_the_sum_is_negative(direction):
    # The same distribution, with the second argument of the KL carrying a normalisation
    # error of 1e-6 in log space (what rounded log-softmax outputs have, made large enough
    # not to depend on rounding): the plain sum is exactly -1e-6 times the total mass.
    logp = torch.log_softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(0)), -1)
    shifted = logp + 1e-6
    policy, ref = (logp, shifted) if direction == "policy_ref" else (shifted, logp)
    assert (naive(policy, ref, direction) < -5e-7).all()  # the case the clamp exists for
    kl = token_kl(policy, ref, direction)
    assert (kl >= 0).all() and torch.isfinite(kl).all()
    assert kl.abs().max() < 1e-12


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_kl_of_identical_and_near_identical_float32_distributions_is_never_negative(direction):
    g = torch.Generator().manual_seed(1)
    logits = 8 * torch.randn(512, 1000, generator=g)
    near = logits + 1e-4 * torch.randn(512, 1000, generator=g)
    for other in (logits, near):
        kl = token_kl(torch.log_softmax(logits, -1), torch.log_softmax(other, -1), direction)
        assert (kl >= 0).all() and torch.isfinite(kl).all()
        assert kl.max() < 1e-4


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_kl_equals_the_true_kl_for_different_distributions(direction):
    g = torch.Generator().manual_seed(2)
    lp, lq = torch.randn(5, 11, generator=g), 2 * torch.randn(5, 11, generator=g)
    got = token_kl(torch.log_softmax(lp, -1), torch.log_softmax(lq, -1), direction)
    want = true_kl(lp, lq) if direction == "policy_ref" else true_kl(lq, lp)
    assert (want > 0.05).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-5)


def test_kl_gradient_is_the_analytic_one():
    # d KL(ref‖softmax(z)) / dz = softmax(z) − ref, and d KL(softmax(z)‖ref) / dz
    # = p·(log p − log ref − KL(p‖ref)) with p = softmax(z).
    g = torch.Generator().manual_seed(3)
    ref = torch.log_softmax(torch.randn(4, 9, generator=g, dtype=torch.float64), -1)
    z = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    token_kl(torch.log_softmax(z, -1), ref, "ref_policy").sum().backward()
    p = torch.softmax(z.detach(), -1)
    torch.testing.assert_close(z.grad, p - ref.exp(), rtol=1e-6, atol=1e-9)

    z.grad = None
    kl = token_kl(torch.log_softmax(z, -1), ref, "policy_ref")
    kl.sum().backward()
    lp = torch.log_softmax(z.detach(), -1)
    want = p * (lp - ref - kl.detach()[:, None])
    torch.testing.assert_close(z.grad, want, rtol=1e-6, atol=1e-9)


def test_raising_a_negative_sum_to_zero_keeps_its_gradient():
    # ref = e^c · softmax(y) with c < −KL makes the plain sum e^c·(KL + c) negative; its
    # gradient in z is still e^c·(softmax(z) − softmax(y)), which a plain clamp would zero.
    g = torch.Generator().manual_seed(4)
    y = torch.randn(3, 7, generator=g, dtype=torch.float64)
    z = (y + 0.05 * torch.randn(3, 7, generator=g, dtype=torch.float64)).requires_grad_()
    c = -0.1
    ref = torch.log_softmax(y, -1) + c
    logp = torch.log_softmax(z, -1)
    assert (naive(logp, ref, "ref_policy") < 0).all()
    kl = token_kl(logp, ref, "ref_policy")
    assert (kl == 0).all()
    kl.sum().backward()
    want = torch.exp(torch.tensor(c)) * (torch.softmax(z.detach(), -1) - torch.softmax(y, -1))
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(z.grad, want, rtol=1e-6, atol=1e-9)
