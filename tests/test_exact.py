"""The exact posterior by enumeration against independent computations."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pyro import poutine

from gfncp_pyro.distributions import ChineseRestaurantProcess
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.likelihoods import IsotropicGaussian, NormalInverseWishart
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import bell_number, canonicalize, enumerate_partitions


def brute_force(x, alpha, likelihood):
    """Score every partition with the CRP log_prob and the batched marginal (no subset table)."""
    n = x.shape[0]
    labels = enumerate_partitions(n)
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    log_joint = crp.log_prob(labels) + likelihood.log_marginal(x, labels)
    return labels, log_joint - torch.logsumexp(log_joint, 0), torch.logsumexp(log_joint, 0)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("likelihood", ["isotropic", "niw"])
def test_matches_brute_force(n, likelihood):
    gen = torch.Generator().manual_seed(n)
    x = 3 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    like = IsotropicGaussian(sigma_mu=4.0, sigma_x=1.0, dim=2) if likelihood == "isotropic" else NormalInverseWishart(dim=2)
    post = exact_posterior(x, alpha=0.7, likelihood=like)
    labels, log_post, log_ev = brute_force(x, 0.7, like)
    assert post.labels.shape == (bell_number(n), n)
    assert torch.equal(post.labels, labels)
    assert torch.allclose(post.log_posterior, log_post, atol=1e-9, rtol=0)
    assert abs(post.log_evidence.item() - log_ev.item()) < 1e-9
    assert abs(post.log_posterior.exp().sum().item() - 1) < 1e-9


@pytest.mark.parametrize("n", [3, 5])
def test_matches_the_pyro_models_log_joint(n):
    """Normalising the collapsed Pyro model's log joint over all partitions gives the same."""
    mixture = CRPMixture(alpha=2.0, sigma_mu=3.0, sigma_x=1.0, dim=2, variant="collapsed")
    x = 2 * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = enumerate_partitions(n)
    log_joint = torch.stack(
        [poutine.trace(poutine.condition(mixture, {"c": c})).get_trace(x).log_prob_sum() for c in labels]
    )
    post = exact_posterior(x, alpha=2.0, sigma_mu=3.0, sigma_x=1.0)
    assert torch.allclose(post.log_posterior, log_joint - torch.logsumexp(log_joint, 0), atol=1e-9, rtol=0)


@given(st.integers(2, 7), st.integers(0, 10_000))
def test_permuting_the_data_permutes_the_posterior(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = 4 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    perm = torch.randperm(n, generator=gen)
    post = exact_posterior(x, alpha=1.0, sigma_mu=5.0)
    permuted = exact_posterior(x[perm], alpha=1.0, sigma_mu=5.0)
    assert abs(post.log_evidence.item() - permuted.log_evidence.item()) < 1e-9
    # partition c of x corresponds to canonicalize(c[perm]) of x[perm]
    mapped = canonicalize(post.labels[:, perm])
    index = {tuple(r): i for i, r in enumerate(permuted.labels.tolist())}
    order = torch.tensor([index[tuple(r)] for r in mapped.tolist()])
    assert torch.allclose(post.log_posterior, permuted.log_posterior[order], atol=1e-9, rtol=0)


def test_top_and_entropy():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [20.0, 20.0]], dtype=torch.float64)
    post = exact_posterior(x, alpha=1.0, sigma_mu=10.0)
    labels, log_p = post.top(2)
    assert labels[0].tolist() == [0, 0, 1]
    assert log_p[0] >= log_p[1]
    p = post.log_posterior.exp()
    assert abs(post.entropy + (p * p.log()).sum().item()) < 1e-12


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (torch.zeros(0, 2), {}, "N = 0"),
        (torch.zeros(13, 2), {}, "N <= 12"),
        (torch.zeros(3), {}, r"shape \(N, D\)"),
        (torch.tensor([[math.inf, 0.0]]), {}, "NaN or infinite"),
        (torch.zeros(3, 2), dict(alpha=-1.0), "alpha"),
        (torch.zeros(3, 2), dict(sigma_x=0.0), "sigma_x"),
    ],
)
def test_bad_input(x, kwargs, match):
    kwargs = {"alpha": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        exact_posterior(x, **kwargs)
