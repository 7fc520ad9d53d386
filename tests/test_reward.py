"""The learned reward as a posterior: brute force at N = 5, importance sampling, reward TV."""

import math

import pytest
import torch

import reference as ref
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.infer import total_variation
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import enumerate_partitions
from gfncp_pyro.reward import reward_posterior
from gfncp_pyro.tabulate import reward_log_p
from validation.compare import compare_one

NET = ref.make_net(21, torch.float64)


@torch.no_grad()
def brute_force_reward(net, x, labels) -> torch.Tensor:
    """``-E[c]`` from the network's four functions with loops over clusters, normalised."""
    values = []
    for row in labels.tolist():
        G = torch.zeros(net.config.g_dim, dtype=x.dtype)
        for k in range(max(row) + 1):
            H = sum((net.h(x[i]) for i, c in enumerate(row) if c == k), torch.zeros(net.config.h_dim, dtype=x.dtype))
            G = G + net.g(H)
        values.append(-float(net.f(G, torch.zeros(net.config.h_dim, dtype=x.dtype))))
    log_w = torch.tensor(values, dtype=torch.float64)
    return log_w - torch.logsumexp(log_w, 0)


def _set(n, seed):
    mixture = CRPMixture(1.0, 3.0, 1.0, 2)
    return mixture, mixture.sample_batch(torch.tensor([n]), torch.Generator().manual_seed(seed),
                                         dtype=torch.float64).x[0]


def test_reward_log_p_and_reward_tv_match_brute_force_at_n5():
    mixture, x = _set(5, 0)
    labels = enumerate_partitions(5)
    expected = brute_force_reward(NET, x, labels)
    assert torch.allclose(reward_log_p(NET, x, labels), expected, atol=1e-9)
    exact = exact_posterior(x, 1.0, likelihood=mixture.likelihood)
    tv = 0.5 * float((exact.log_posterior.exp() - expected.exp()).abs().sum())
    result = compare_one(NET, x, exact, exact.labels[0], torch.stack([torch.randperm(5) for _ in range(2)]),
                         num_importance=50, sdpp_orders=5, generator=torch.Generator().manual_seed(0))
    assert abs(result["reward_tv"] - tv) < 1e-9
    kl = float((exact.log_posterior.exp() * (exact.log_posterior - expected)).sum())
    assert abs(result["reward_kl_pq"] - kl) < 1e-9


def test_reward_posterior_is_exact_for_small_sets_and_order_free():
    _, x = _set(5, 1)
    result = reward_posterior(NET, x)
    assert result.method == "enumeration" and math.isnan(result.ess)
    assert result.labels.shape == (52, 5) and torch.all(result.log_probs[:-1] >= result.log_probs[1:])
    assert abs(float(result.log_probs.exp().sum()) - 1) < 1e-12
    # Relabelling the points: the same distribution over partitions of the permuted points.
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = reward_posterior(NET, x[perm])
    from gfncp_pyro.partitions import canonicalize
    from gfncp_pyro.infer import PartitionTable

    mapped = PartitionTable(canonicalize(result.labels[:, perm]), result.log_probs)
    assert total_variation(mapped, PartitionTable(permuted.labels, permuted.log_probs)) < 1e-9


def test_reward_posterior_by_importance_sampling_approaches_enumeration():
    _, x = _set(6, 2)
    exact = reward_posterior(NET, x)
    estimate = reward_posterior(NET, x, max_enumeration=5, num_samples=20000, generator=3)
    assert estimate.method == "importance" and 1 < estimate.ess <= 20000
    assert total_variation(exact, estimate) < 0.1


def test_reward_posterior_refuses_bad_input():
    _, x = _set(4, 0)
    with pytest.raises(ValueError, match="one set"):
        reward_posterior(NET, x[None].expand(2, -1, -1))
    with pytest.raises(ValueError, match="at most 12"):
        reward_posterior(NET, x, max_enumeration=13)
    with pytest.raises(ValueError, match="NaN"):
        reward_posterior(NET, torch.full((3, 2), math.nan, dtype=torch.float64))
