"""The Pyro model of Eq. 1 in its three variants and the vectorised (c, x) sampler."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive
from scipy import stats

from gfncp_pyro.models import CRPMixture, mog2d
from gfncp_pyro.partitions import PAD_LABEL, enumerate_partitions, is_canonical, num_clusters

VARIANTS = ["dynamic", "padded", "collapsed"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_generates_and_conditions(variant):
    pyro.set_rng_seed(0)
    mixture = CRPMixture(alpha=2.0, sigma_mu=5.0, sigma_x=1.0, dim=3, variant=variant)
    trace = poutine.trace(mixture).get_trace(num_points=7)
    x, c = trace.nodes["x"]["value"], trace.nodes["c"]["value"]
    assert x.shape == (7, 3) and c.shape == (7,)
    assert bool(is_canonical(c))
    assert torch.isfinite(trace.log_prob_sum())
    if variant != "collapsed":
        mu = trace.nodes["mu"]["value"]
        assert mu.shape == ((7, 3) if variant == "padded" else (int(c.max()) + 1, 3))
    observed = poutine.trace(mixture).get_trace(x)
    assert observed.nodes["x"]["is_observed"]
    assert torch.equal(observed.nodes["x"]["value"], x)


@pytest.mark.parametrize("variant", ["dynamic", "padded"])
def test_uncollapsed_log_joint_matches_direct_formula(variant):
    pyro.set_rng_seed(1)
    mixture = CRPMixture(alpha=1.5, sigma_mu=4.0, sigma_x=0.5, dim=2, variant=variant)
    trace = poutine.trace(mixture).get_trace(num_points=6)
    c, mu, x = (trace.nodes[s]["value"] for s in ("c", "mu", "x"))
    direct = 0.0
    # Ewens EPPF, written out
    sizes = torch.bincount(c).double()
    alpha = 1.5
    direct += len(sizes) * math.log(alpha) + math.lgamma(alpha) - math.lgamma(alpha + 6)
    direct += sum(math.lgamma(s) for s in sizes.tolist())
    direct += torch.distributions.Normal(0.0, 4.0).log_prob(mu.double()).sum().item()
    direct += torch.distributions.Normal(mu[c].double(), 0.5).log_prob(x.double()).sum().item()
    assert abs(trace.log_prob_sum().item() - direct) < 1e-4


def test_predictive_on_padded_variant():
    pyro.set_rng_seed(2)
    mixture = CRPMixture(alpha=1.0, sigma_mu=5.0, dim=2, variant="padded")
    samples = Predictive(mixture, num_samples=20)(num_points=5)
    # Predictive left-pads sites outside every plate to the model's plate nesting (1 here)
    assert samples["c"].shape == (20, 1, 5)
    assert samples["mu"].shape == (20, 5, 2)
    assert samples["x"].shape == (20, 5, 2)
    assert bool(is_canonical(samples["c"]).all())
    assert len({tuple(c.tolist()) for c in samples["c"][:, 0]}) > 1


def test_collapsed_joint_is_the_integrated_uncollapsed_joint():
    """log p(c, x) of the collapsed variant equals a Monte-Carlo-free integral of the dynamic
    one: for one cluster the marginal of x is an exact MVN."""
    mixture = CRPMixture(alpha=1.0, sigma_mu=3.0, sigma_x=0.7, dim=2, variant="collapsed")
    x = torch.randn(4, 2, dtype=torch.float64)
    c = torch.zeros(4, dtype=torch.long)
    trace = poutine.trace(poutine.condition(mixture, {"c": c})).get_trace(x)
    log_x = trace.nodes["x"]["fn"].log_prob(x)
    cov = 0.49 * torch.eye(4, dtype=torch.float64) + 9.0 * torch.ones(4, 4, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), cov)
    assert abs(log_x.item() - mvn.log_prob(x.T).sum().item()) < 1e-9


def _pyro_draws(mixture, n, num):
    labels, xs = [], []
    for _ in range(num):
        trace = poutine.trace(mixture).get_trace(num_points=n)
        labels.append(trace.nodes["c"]["value"])
        xs.append(trace.nodes["x"]["value"])
    return torch.stack(labels), torch.stack(xs).double()


def _partition_counts(labels, n):
    index = {tuple(r): i for i, r in enumerate(enumerate_partitions(n).tolist())}
    counts = torch.zeros(len(index))
    for r in labels.tolist():
        counts[index[tuple(r)]] += 1
    return counts


@pytest.mark.parametrize("variant", VARIANTS)
def test_sampler_matches_pyro_model(variant):
    """The vectorised sampler and the Pyro model draw the same distribution over (c, x)."""
    n, num = 4, 3000
    mixture = CRPMixture(alpha=1.3, sigma_mu=2.0, sigma_x=0.5, dim=2, variant=variant)
    pyro.set_rng_seed(3)
    c_pyro, x_pyro = _pyro_draws(mixture, n, num)
    batch = mixture.sample_batch(torch.full((num,), n), torch.Generator().manual_seed(4), torch.float64)
    # the partition distribution (15 partitions): two-sample chi-square
    table = torch.stack([_partition_counts(c_pyro, n), _partition_counts(batch.labels, n)])
    table = table[:, table.sum(0) > 0]
    assert stats.chi2_contingency(table.numpy()).pvalue > 1e-3
    # pooled moments: per coordinate variance sigma_mu^2 + sigma_x^2; same-cluster covariance
    for x, c in ((x_pyro, c_pyro), (batch.x, batch.labels)):
        var = x.var().item()
        assert abs(var - 4.25) < 6 * 4.25 * math.sqrt(2 / x.numel()) + 0.1
        same = c[:, 0] == c[:, 1]
        cov_same = (x[same, 0] * x[same, 1]).mean().item()
        cov_diff = (x[~same, 0] * x[~same, 1]).mean().item()
        assert abs(cov_same - 4.0) < 0.6 and abs(cov_diff) < 0.6
    # two-sample KS on the first coordinate of a point
    assert stats.ks_2samp(x_pyro[:, 2, 0].numpy(), batch.x[:, 2, 0].numpy()).pvalue > 1e-3


def test_sampler_batches_mixed_lengths():
    mixture = mog2d(alpha=6.0)
    lengths = torch.tensor([1, 50, 7, 100])
    batch = mixture.sample_batch(lengths, torch.Generator().manual_seed(0))
    assert batch.x.shape == (4, 100, 2) and batch.labels.shape == (4, 100)
    assert torch.equal(batch.lengths, lengths)
    assert bool(is_canonical(batch.labels, batch.mask).all())
    assert bool((batch.labels[~batch.mask] == PAD_LABEL).all())
    assert bool((batch.x[~batch.mask] == 0).all())
    again = mixture.sample_batch(lengths, torch.Generator().manual_seed(0))
    assert torch.equal(batch.x, again.x) and torch.equal(batch.labels, again.labels)


def test_sampler_cluster_count_distribution():
    """E[K] = sum_i alpha / (alpha + i) for the sampler's partitions (N = 100, alpha = 6)."""
    mixture = mog2d(alpha=6.0)
    batch = mixture.sample_batch(torch.full((4000,), 100), torch.Generator().manual_seed(5))
    k = num_clusters(batch.labels).double()
    expected = sum(6.0 / (6.0 + i) for i in range(100))
    assert abs(k.mean().item() - expected) < 4 * k.std().item() / math.sqrt(k.numel())


def test_points_scatter_around_their_means():
    mixture = CRPMixture(alpha=2.0, sigma_mu=10.0, sigma_x=0.5, dim=2)
    batch = mixture.sample_batch(torch.full((500,), 20), torch.Generator().manual_seed(6), torch.float64)
    own_mean = batch.means.gather(1, batch.labels.unsqueeze(-1).expand(-1, -1, 2))
    resid = batch.x - own_mean
    assert abs(resid.std().item() - 0.5) < 0.02


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(sigma_mu=-1.0), "sigma_mu"),
        (dict(sigma_x=0.0), "sigma_x"),
        (dict(variant="fancy"), "variant"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRPMixture(**kwargs)


def test_bad_points():
    mixture = CRPMixture(dim=2)
    for bad, match in (
        (torch.zeros(3, 3), r"shape \(N, 2\)"),
        (torch.zeros(0, 2), "N = 0"),
        (torch.tensor([[0.0, float("nan")]]), "NaN"),
        (torch.zeros(2, 3, 2), "shape"),
    ):
        with pytest.raises(ValueError, match=match):
            mixture(bad)
    with pytest.raises(ValueError, match="num_points"):
        mixture(num_points=0)
    with pytest.raises(ValueError, match="lengths"):
        mixture.sample_batch(torch.tensor([3, 0]))
