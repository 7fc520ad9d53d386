"""The subset dynamic programme against enumeration."""

import pytest
import torch
from scipy import stats

from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.likelihoods import NormalInverseWishart
from gfncp_pyro.subset_dp import subset_posterior


def _data(n, seed):
    return 3 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _coclustering(post):
    p = post.log_posterior.exp()
    same = (post.labels.unsqueeze(-1) == post.labels.unsqueeze(-2)).double()
    return (p[:, None, None] * same).sum(0)


@pytest.mark.parametrize("n", [1, 2, 4, 7, 9, 11])
def test_dp_matches_enumeration(n):
    x = _data(n, n)
    post = exact_posterior(x, alpha=0.8, sigma_mu=4.0)
    dp = subset_posterior(x, alpha=0.8, sigma_mu=4.0)
    assert abs(dp.log_evidence.item() - post.log_evidence.item()) < 1e-9
    labels, log_p = dp.map_partition()
    best = int(post.log_posterior.argmax())
    assert abs(log_p.item() - post.log_posterior[best].item()) < 1e-9
    assert torch.equal(labels, post.labels[best])
    assert torch.allclose(dp.coclustering(), _coclustering(post), atol=1e-9, rtol=0)


def test_dp_with_niw_likelihood():
    x = _data(6, 1)
    like = NormalInverseWishart(dim=2)
    post = exact_posterior(x, alpha=1.0, likelihood=like)
    dp = subset_posterior(x, alpha=1.0, likelihood=like)
    assert abs(dp.log_evidence.item() - post.log_evidence.item()) < 1e-9


def test_dp_block_probabilities_sum_to_expected_num_blocks():
    x = _data(8, 2)
    post = exact_posterior(x, alpha=1.0, sigma_mu=4.0)
    dp = subset_posterior(x, alpha=1.0, sigma_mu=4.0)
    expected_k = (post.log_posterior.exp() * (post.labels.max(-1).values + 1)).sum()
    assert abs(dp.log_block_probabilities().exp().sum().item() - expected_k.item()) < 1e-9


def test_dp_samples_follow_the_posterior():
    """Chi-square at N = 5: exact samples from the DP against the enumerated posterior."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.5], [1.5, -0.5], [4.0, 4.0], [5.0, 3.5]], dtype=torch.float64)
    post = exact_posterior(x, alpha=1.0, sigma_mu=3.0)
    dp = subset_posterior(x, alpha=1.0, sigma_mu=3.0)
    samples = dp.sample(4000, generator=torch.Generator().manual_seed(0))
    index = {tuple(r): i for i, r in enumerate(post.labels.tolist())}
    counts = torch.zeros(len(index))
    for row in samples.tolist():
        counts[index[tuple(row)]] += 1
    expected = post.log_posterior.exp() * counts.sum()
    keep = expected > 5  # pool the rare partitions into one cell
    obs = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    exp = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    assert stats.chisquare(obs.numpy(), exp.numpy()).pvalue > 1e-3


def test_dp_n16_runs():
    dp = subset_posterior(_data(16, 3), alpha=1.0, sigma_mu=5.0)
    cc = dp.coclustering()
    assert cc.shape == (16, 16)
    assert torch.allclose(cc.diagonal(), torch.ones(16, dtype=torch.float64), atol=1e-9)
    assert torch.isfinite(dp.log_evidence)


def test_dp_bad_input():
    with pytest.raises(ValueError, match="N <= 20"):
        subset_posterior(torch.zeros(21, 2), alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        subset_posterior(torch.zeros(3, 2), alpha=0.0)


def test_padded_small_levels_match_the_grouped_levels(monkeypatch):
    """The padded block of the small levels and the size-grouped rows give the same tables."""
    from gfncp_pyro import subset_dp

    x = _data(11, 4)
    padded = subset_posterior(x, alpha=1.3, sigma_mu=4.0)
    monkeypatch.setattr(subset_dp, "_PADDED_BITS", -1)
    grouped = subset_posterior(x, alpha=1.3, sigma_mu=4.0)
    for a, b in ((padded.log_z, grouped.log_z), (padded.log_max, grouped.log_max)):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)
    assert torch.equal(padded.map_partition()[0], grouped.map_partition()[0])
    monkeypatch.setattr(subset_dp, "_PADDED_BITS", 20)
    everything = subset_posterior(x, alpha=1.3, sigma_mu=4.0)
    assert torch.allclose(everything.log_z, grouped.log_z, atol=1e-9, rtol=0)
