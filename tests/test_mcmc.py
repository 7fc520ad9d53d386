"""Collapsed Gibbs (gfncp_pyro.mcmc) against the exact posterior and direct computations."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from gfncp_pyro.distributions import ChineseRestaurantProcess
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.infer import PartitionTable, total_variation
from gfncp_pyro.likelihoods import IsotropicGaussian, NormalInverseWishart
from gfncp_pyro.mcmc import CollapsedGibbs, collapsed_gibbs
from gfncp_pyro.partitions import canonicalize

LIKELIHOODS = {
    "isotropic": lambda: IsotropicGaussian(sigma_mu=4.0, sigma_x=1.0, dim=2),
    "niw": lambda: NormalInverseWishart(dim=2, mu0=[0.5, -0.5], kappa0=0.5, nu0=4.5,
                                        scale=[[2.0, 0.3], [0.3, 1.0]]),
}


def _points(n, seed=0, scale=3.0):
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------ the predictive, computed directly
def _direct_log_marginal_isotropic(x: np.ndarray, sigma_mu, sigma_x) -> float:
    """Per dimension the block is one multivariate normal N(0, vx I + vm 11^T)."""
    n = x.shape[0]
    cov = sigma_x**2 * np.eye(n) + sigma_mu**2 * np.ones((n, n))
    return sum(stats.multivariate_normal(np.zeros(n), cov).logpdf(x[:, d]) for d in range(x.shape[1]))


def _direct_log_marginal_niw(x: np.ndarray, like: NormalInverseWishart) -> float:
    """Murphy (2007), Eq. (266): raw sums in a Python loop, scipy's multigammaln."""
    n, d = x.shape
    mu0, k0, nu0, psi = like.mu0.numpy(), like.kappa0, like.nu0, like.scale.numpy()
    xbar = x.mean(0)
    s = sum(np.outer(xi - xbar, xi - xbar) for xi in x)
    kn, nun = k0 + n, nu0 + n
    psin = psi + s + (k0 * n / kn) * np.outer(xbar - mu0, xbar - mu0)
    return (-0.5 * n * d * math.log(math.pi)
            + float(special.multigammaln(nun / 2, d)) - float(special.multigammaln(nu0 / 2, d))
            + 0.5 * nu0 * np.linalg.slogdet(psi)[1] - 0.5 * nun * np.linalg.slogdet(psin)[1]
            + 0.5 * d * math.log(k0 / kn))


@pytest.mark.parametrize("name", ["isotropic", "niw"])
def test_predictive_matches_ratio_of_direct_marginals(name):
    like = LIKELIHOODS[name]()
    x = _points(7, seed=3).numpy()
    labels = torch.tensor([0, 1, 0, 2, 1, 0])  # blocks of the first six points, point 6 is new
    stats_ = like.block_statistics(torch.as_tensor(x[:6]), labels, num_clusters=4)  # slot 3 empty
    got = like.log_predictive_from_stats(torch.as_tensor(x[6:7]), *(t.unsqueeze(0) for t in stats_))[0]

    def direct(block):
        if name == "isotropic":
            return _direct_log_marginal_isotropic(block, like.sigma_mu, like.sigma_x)
        return _direct_log_marginal_niw(block, like)

    for k in range(4):
        block = x[:6][labels.numpy() == k]
        with_new = np.concatenate([block, x[6:7]])
        expected = direct(with_new) - (direct(block) if len(block) else 0.0)
        assert abs(float(got[k]) - expected) < 1e-9, (k, float(got[k]), expected)


# --------------------------------------------------------- the Gibbs conditional, from the joint
def _joint(x, alpha, like, labels):
    n = x.shape[0]
    crp = ChineseRestaurantProcess(torch.tensor(alpha, dtype=torch.float64), n)
    return crp.log_prob(labels) + like.log_marginal(x, labels)


@pytest.mark.parametrize("name", ["isotropic", "niw"])
def test_conditional_is_the_joint_of_each_reassignment(name):
    """After remove(i), softmax of the logits = p(c with c_i moved | x) normalised over the moves."""
    like, alpha, n = LIKELIHOODS[name](), 0.8, 6
    x = _points(n, seed=1)
    chains = CollapsedGibbs(x, alpha, like, num_chains=5, generator=2)
    for _ in range(3):
        chains.sweep()
    for i in range(n):
        before = chains.labels.clone()
        chains.remove(i)
        logits = chains.conditional_logits(i)
        for c in range(chains.num_chains):
            finite = torch.isfinite(logits[c]).nonzero().squeeze(-1)
            others = before[c].clone()
            others[i] = -1
            occupied = set(others.tolist()) - {-1}
            assert set(finite.tolist()) - occupied and len(finite) == len(occupied) + 1
            candidates = []
            for k in finite.tolist():
                moved = before[c].clone()
                moved[i] = k
                candidates.append(canonicalize(moved))
            log_joint = _joint(x, alpha, like, torch.stack(candidates))
            expected = log_joint - torch.logsumexp(log_joint, 0)
            got = logits[c, finite] - torch.logsumexp(logits[c, finite], 0)
            assert torch.allclose(got, expected, atol=1e-9, rtol=0)
        chains.add(i, before[:, i])


@pytest.mark.parametrize("name", ["isotropic", "niw"])
def test_running_statistics_match_a_direct_recount(name):
    like = LIKELIHOODS[name]()
    x = _points(7, seed=4)
    chains = CollapsedGibbs(x, 1.3, like, num_chains=4, generator=5)
    chains.sweep()
    chains.sweep()  # statistics now come from Welford up/downdates, slots not canonical
    for c in range(4):
        for k in range(7):
            block = x[chains.labels[c] == k]
            assert float(chains.counts[c, k]) == block.shape[0]
            if block.shape[0] == 0:
                continue
            mean = block.mean(0)
            delta = block - mean
            scatter = delta.square().sum() if name == "isotropic" else delta.T @ delta
            assert torch.allclose(chains.means[c, k], mean, atol=1e-12)
            assert torch.allclose(chains.scatter[c, k], scatter, atol=1e-10)


# ------------------------------------------------------------------- against the exact posterior
@pytest.mark.parametrize("name", ["isotropic", "niw"])
def test_chi_square_against_the_exact_posterior_at_n5(name):
    """Final states of independent chains are i.i.d. draws; Pearson's test on Bell(5) = 52 cells
    (cells with expected count < 5 pooled)."""
    like, alpha = LIKELIHOODS[name](), 1.0
    x = _points(5, seed=7, scale=2.0)
    exact = exact_posterior(x, alpha, likelihood=like)
    result = collapsed_gibbs(x, alpha, likelihood=like, num_chains=4000, num_samples=1, burn_in=25, generator=11)
    samples = result.samples
    index = {tuple(row): j for j, row in enumerate(exact.labels.tolist())}
    observed = np.bincount([index[tuple(row)] for row in samples.tolist()], minlength=len(index))
    expected = exact.log_posterior.exp().numpy() * samples.shape[0]
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    _, p_value = stats.chisquare(obs, exp)
    assert p_value > 1e-3, p_value


def test_a_wrong_posterior_fails_the_same_chi_square():
    """The test has power: the same draws against the posterior of another alpha are rejected."""
    like = LIKELIHOODS["isotropic"]()
    x = _points(5, seed=7, scale=2.0)
    wrong = exact_posterior(x, 3.0, likelihood=like)
    result = collapsed_gibbs(x, 1.0, likelihood=like, num_chains=4000, num_samples=1, burn_in=25, generator=11)
    index = {tuple(row): j for j, row in enumerate(wrong.labels.tolist())}
    observed = np.bincount([index[tuple(r)] for r in result.samples.tolist()], minlength=len(index))
    expected = wrong.log_posterior.exp().numpy() * result.samples.shape[0]
    small = expected < 5
    _, p_value = stats.chisquare(np.append(observed[~small], observed[small].sum()),
                                 np.append(expected[~small], expected[small].sum()))
    assert p_value < 1e-6


def test_total_variation_at_n8_after_many_sweeps():
    like, alpha = IsotropicGaussian(sigma_mu=5.0, sigma_x=1.0, dim=2), 1.0
    x = _points(8, seed=0, scale=3.0)
    exact = exact_posterior(x, alpha, likelihood=like)
    result = collapsed_gibbs(x, alpha, likelihood=like, num_chains=200, num_samples=150, burn_in=20,
                             generator=0)
    table = result.table()
    assert isinstance(table, PartitionTable)
    assert abs(float(table.log_probs.exp().sum()) - 1) < 1e-9
    tv = total_variation(PartitionTable(exact.labels, exact.log_posterior), table)
    assert tv < 0.04, tv
    # the co-clustering of the samples approaches the exact one
    same = (exact.labels.unsqueeze(-1) == exact.labels.unsqueeze(-2)).double()
    exact_cc = (exact.log_posterior.exp()[:, None, None] * same).sum(0)
    assert float((result.co_clustering() - exact_cc).abs().max()) < 0.02


def test_log_joint_and_shapes():
    like = LIKELIHOODS["niw"]()
    x = _points(6, seed=2)
    result = collapsed_gibbs(x, 0.5, likelihood=like, num_chains=3, num_samples=4, burn_in=2, thin=3, generator=1)
    assert result.labels.shape == (3, 4, 6) and result.log_joint.shape == (3, 4)
    assert torch.equal(result.samples, canonicalize(result.samples))
    assert torch.allclose(result.log_joint.reshape(-1), _joint(x, 0.5, like, result.samples), atol=1e-9)


# ------------------------------------------------------------------------------ randomness
def test_seeds_and_the_global_rng():
    x = _points(6, seed=3)
    run = lambda g: collapsed_gibbs(x, 1.0, sigma_mu=4.0, num_chains=8, num_samples=3, burn_in=1, generator=g).labels
    assert torch.equal(run(5), run(5))
    assert torch.equal(run(torch.Generator().manual_seed(5)), run(5))
    torch.manual_seed(123)
    first = run(None)
    torch.manual_seed(123)
    assert torch.equal(first, run(None))
    assert not torch.equal(run(5), run(6))


@pytest.mark.parametrize("init", ["one", "singletons", "uniform", torch.tensor([0, 0, 1, 1, 2, 0])])
def test_every_init_gives_valid_states(init):
    x = _points(6, seed=3)
    result = collapsed_gibbs(x, 1.0, num_chains=4, num_samples=2, burn_in=0, init=init, generator=0)
    assert torch.equal(result.samples, canonicalize(result.samples))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"num_chains": 0}, "num_chains"),
    ({"num_samples": 0}, "num_samples"),
    ({"burn_in": -1}, "burn_in"),
    ({"thin": 0}, "thin"),
    ({"thin": 1.5}, "thin"),
    ({"init": "random"}, "init"),
    ({"init": torch.tensor([0, 2, 1, 0])}, "init labels"),
    ({"init": torch.tensor([0, 2, 1, 0, 0, 0])}, "canonical"),
    ({"init": torch.zeros(6)}, "init labels"),
    ({"generator": "seed"}, "generator"),
    ({"alpha": 0.0}, "alpha"),
    ({"likelihood": IsotropicGaussian(1.0, 1.0, dim=3)}, "dimension 2"),
])
def test_bad_input_raises_a_clear_error(kwargs, match):
    x = _points(6)
    kwargs = {"alpha": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        collapsed_gibbs(x, num_chains=kwargs.pop("num_chains", 2), num_samples=kwargs.pop("num_samples", 1),
                        burn_in=kwargs.pop("burn_in", 0), **kwargs)


def test_bad_points_raise():
    with pytest.raises(ValueError, match="NaN"):
        collapsed_gibbs(torch.tensor([[0.0, float("nan")]]), 1.0, num_chains=2, num_samples=1)
    with pytest.raises(ValueError, match="shape"):
        collapsed_gibbs(torch.zeros(3), 1.0, num_chains=2, num_samples=1)
