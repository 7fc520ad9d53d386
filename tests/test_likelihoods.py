"""Conjugate Gaussian likelihoods against independent computations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from gfncp_pyro.likelihoods import IsotropicGaussian, NormalInverseWishart
from gfncp_pyro.partitions import canonicalize, enumerate_partitions

F64 = torch.float64


def _data(n, d, seed, scale=3.0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=gen, dtype=dtype)


def _labels(n, k, seed):
    gen = torch.Generator().manual_seed(seed + 1000)
    return canonicalize(torch.randint(0, k, (n,), generator=gen))


def _niw(d, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=F64)
    return NormalInverseWishart(
        dim=d,
        mu0=torch.randn(d, generator=gen, dtype=F64),
        kappa0=0.3 + torch.rand((), generator=gen).item(),
        nu0=d - 1 + 0.5 + 3 * torch.rand((), generator=gen).item(),
        scale=a @ a.T + 0.5 * torch.eye(d, dtype=F64),
    )


def _likelihoods(d, seed):
    return [IsotropicGaussian(sigma_mu=2.5, sigma_x=0.7, dim=d), _niw(d, seed)]


# ----------------------------------------------------------------- isotropic vs MVN
def _mvn_block(x, sigma_mu, sigma_x):
    """log N(vec(x); 0, I_D kron (sigma_x^2 I_n + sigma_mu^2 11^T)), dimension-major."""
    n, d = x.shape
    block = sigma_x**2 * torch.eye(n, dtype=F64) + sigma_mu**2 * torch.ones(n, n, dtype=F64)
    cov = torch.kron(torch.eye(d, dtype=F64), block)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n * d, dtype=F64), cov)
    return mvn.log_prob(x.T.reshape(-1))


@given(
    n=st.integers(1, 7),
    d=st.integers(1, 4),
    sigma_mu=st.floats(0.1, 20.0),
    sigma_x=st.floats(0.1, 5.0),
    seed=st.integers(0, 10**6),
)
def test_isotropic_block_matches_mvn(n, d, sigma_mu, sigma_x, seed):
    x = _data(n, d, seed)
    like = IsotropicGaussian(sigma_mu=sigma_mu, sigma_x=sigma_x, dim=d)
    got = like.log_marginal(x, torch.zeros(n, dtype=torch.long))
    assert got.shape == () and got.dtype == F64
    # The (nD x nD) covariance has condition number up to ~1e5 here: allow a relative 1e-11.
    want = _mvn_block(x, sigma_mu, sigma_x).item()
    assert math.isclose(got.item(), want, rel_tol=1e-11, abs_tol=1e-9)

    labels = _labels(n, 3, seed)
    blocks = [x[labels == k] for k in range(int(labels.max()) + 1)]
    expected = sum(_mvn_block(block, sigma_mu, sigma_x) for block in blocks).item()
    assert math.isclose(like.log_marginal(x, labels).item(), expected, rel_tol=1e-11, abs_tol=1e-9)


# ------------------------------------------------------------------------ NIW checks
def _niw_posterior_np(like, xs):
    """Textbook NIW update from the raw points of a block (numpy, float64)."""
    mu0, psi = like.mu0.numpy(), like.scale.numpy()
    n = len(xs)
    if n == 0:
        return mu0, like.kappa0, like.nu0, psi
    xs = np.asarray(xs)
    xbar = xs.mean(0)
    scatter = sum(np.outer(v - xbar, v - xbar) for v in xs)
    kappa, nu = like.kappa0 + n, like.nu0 + n
    loc = (like.kappa0 * mu0 + n * xbar) / kappa
    psi_n = psi + scatter + like.kappa0 * n / kappa * np.outer(xbar - mu0, xbar - mu0)
    return loc, kappa, nu, psi_n


def _niw_sequential_t(like, x, labels):
    """Sum of sequential Student-t predictives (scipy) in the order of the points."""
    d = like.dim
    total = 0.0
    seen = {}
    for v, k in zip(x.numpy(), labels.tolist()):
        loc, kappa, nu, psi = _niw_posterior_np(like, seen.get(k, []))
        df = nu - d + 1
        shape = psi * (kappa + 1) / (kappa * df)
        total += stats.multivariate_t(loc=loc, shape=shape, df=df).logpdf(v)
        seen.setdefault(k, []).append(v)
    return total


@given(n=st.integers(1, 7), d=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_niw_matches_scipy_student_t_chain(n, d, seed):
    like = _niw(d, seed)
    x = _data(n, d, seed)
    labels = _labels(n, 3, seed)
    assert abs(like.log_marginal(x, labels).item() - _niw_sequential_t(like, x, labels)) < 1e-9


def test_niw_posterior_params_match_textbook():
    like = _niw(3, 5)
    x, labels = _data(9, 3, 5), _labels(9, 3, 5)
    post = like.posterior_params(x, labels, num_clusters=5)
    assert post.loc.shape == (5, 3) and post.scale.shape == (5, 3, 3) and post.nu.shape == (5,)
    for k in range(5):
        loc, kappa, nu, psi = _niw_posterior_np(like, x[labels == k].numpy())
        np.testing.assert_allclose(post.loc[k].numpy(), loc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(post.scale[k].numpy(), psi, rtol=1e-12, atol=1e-12)
        assert post.kappa[k].item() == kappa and post.nu[k].item() == nu


@pytest.mark.parametrize("n", [1, 2, 3])
def test_niw_1d_matches_numerical_integration(n):
    """D = 1: sigma^2 ~ InvGamma(nu0/2, psi/2), mu | sigma^2 ~ N(mu0, sigma^2/kappa0).

    Integrated over ``(log sigma^2, t)`` with ``mu = mu0 + t sigma / sqrt(kappa0)`` so that the
    heavy inverse-gamma tail and the widening mean prior both fit in fixed finite limits.
    """
    mu0, kappa0, nu0, psi = 0.4, 0.8, 2.5, 1.7
    like = NormalInverseWishart(dim=1, mu0=mu0, kappa0=kappa0, nu0=nu0, scale=psi)
    x = torch.tensor([0.3, -1.1, 2.0][:n], dtype=F64).unsqueeze(-1)
    xs = x.squeeze(-1).numpy()

    def integrand(t, log_var):  # normal likelihood, N(t; 0, 1), InvGamma, Jacobian sigma^2
        var = math.exp(log_var)
        resid = xs - (mu0 + t * math.sqrt(var / kappa0))
        log_f = (
            -0.5 * n * math.log(2 * math.pi * var) - (resid * resid).sum() / (2 * var)
            - 0.5 * t * t - 0.5 * math.log(2 * math.pi)
            + (nu0 / 2) * math.log(psi / 2) - math.lgamma(nu0 / 2)
            - (nu0 / 2 + 1) * log_var - psi / (2 * var)
            + log_var
        )
        return math.exp(log_f)

    value, _ = integrate.dblquad(integrand, -30.0, 60.0, -12.0, 12.0, epsabs=0, epsrel=1e-10)
    got = like.log_marginal(x, torch.zeros(n, dtype=torch.long)).item()
    assert abs(got - math.log(value)) < 1e-9


# --------------------------------------------------------- exchangeability (any order)
@given(
    n=st.integers(1, 7),
    d=st.integers(1, 3),
    family=st.sampled_from([0, 1]),
    seed=st.integers(0, 10**6),
    order=st.randoms(use_true_random=False),
)
def test_marginal_is_product_of_predictives_in_any_order(n, d, family, seed, order):
    like = _likelihoods(d, seed)[family]
    x, labels = _data(n, d, seed), _labels(n, 4, seed)
    perm = list(range(n))
    order.shuffle(perm)
    xp, lp = x[perm], canonicalize(labels[perm])
    total = 0.0
    for t in range(n):  # point t joins cluster lp[t] (== K of the prefix for a new cluster)
        column = like.log_predictive(xp[t], xp[:t], lp[:t])
        assert column.shape == (int(lp[:t].max()) + 2 if t else 1,)
        total += column[lp[t]].item()
    assert abs(total - like.log_marginal(x, labels).item()) < 1e-9


def test_log_predictive_pads_rows_with_fewer_clusters():
    like = IsotropicGaussian(sigma_mu=3.0, sigma_x=1.0, dim=2)
    x = _data(6, 2, 0)
    labels = torch.tensor([[0, 1, 2, 0, 1, 3], [0, 0, 0, 0, 1, 1]])
    x_new = _data(2, 2, 1)
    out = like.log_predictive(x_new, x, labels)
    assert out.shape == (2, 5)
    assert torch.isneginf(out[1, 3:]).all() and torch.isfinite(out[0]).all()
    prior = torch.distributions.Normal(torch.zeros((), dtype=F64), math.sqrt(1 + 9.0))
    prior = prior.log_prob(x_new).sum(-1)
    assert torch.allclose(out[torch.arange(2), torch.tensor([4, 2])], prior, atol=1e-12, rtol=0)
    # Each row equals its own unbatched call.
    for b in range(2):
        single = like.log_predictive(x_new[b], x, labels[b])
        assert torch.allclose(out[b, : single.shape[0]], single, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------ subset table
@pytest.mark.parametrize("n", [1, 4, 8])
@pytest.mark.parametrize("family", [0, 1])
def test_subset_table_matches_single_block_marginals(n, family):
    d = 2
    like = _likelihoods(d, n)[family]
    x = _data(n, d, n)
    table = like.subset_log_marginals(x)
    assert table.shape == (2**n,) and table.dtype == F64 and table[0].item() == 0.0
    for subset in range(1, 2**n):
        points = [i for i in range(n) if subset >> i & 1]
        expected = like.log_marginal(x[points], torch.zeros(len(points), dtype=torch.long))
        assert abs(table[subset].item() - expected.item()) < 1e-9


@pytest.mark.parametrize("family", [0, 1])
def test_subset_table_scores_every_partition(family):
    """A partition's log marginal is the sum of its blocks' table entries (N = 6, all 203)."""
    n = 6
    like = _likelihoods(2, 3)[family]
    x = _data(n, 2, 3)
    table = like.subset_log_marginals(x)
    labels = enumerate_partitions(n)
    bits = (1 << torch.arange(n)).expand_as(labels)
    masks = torch.zeros_like(labels).scatter_add_(1, labels, bits)
    assert torch.allclose(table[masks].sum(-1), like.log_marginal(x, labels), atol=1e-9, rtol=0)


# ----------------------------------------------------------------- batches and padding
@pytest.mark.parametrize("family", [0, 1])
def test_padded_batch_matches_per_set_calls(family):
    like = _likelihoods(3, 7)[family]
    lengths = [5, 1, 8, 3]
    x = torch.zeros(4, 8, 3, dtype=F64)
    labels = torch.full((4, 8), -1)
    sets = []
    for b, n in enumerate(lengths):
        xb, lb = _data(n, 3, b), _labels(n, 3, b)
        x[b, :n], labels[b, :n] = xb, lb
        x[b, n:] = 1e6  # padding values must not matter
        sets.append((xb, lb))
    mask = torch.arange(8) < torch.tensor(lengths).unsqueeze(-1)
    batched = like.log_marginal(x, labels, mask)
    stats_b = like.block_statistics(x, labels, num_clusters=4, mask=mask)
    for b, (xb, lb) in enumerate(sets):
        assert abs(batched[b].item() - like.log_marginal(xb, lb).item()) < 1e-9
        single = like.block_statistics(xb, lb, num_clusters=4)
        for got, want in zip(stats_b, single):
            assert torch.allclose(got[b], want, atol=1e-9, rtol=0)


def test_many_labellings_of_one_set_and_float32():
    like = IsotropicGaussian(sigma_mu=10.0, sigma_x=1.0, dim=2)
    x = _data(8, 2, 11)
    labels = enumerate_partitions(8)  # 4,140 labellings
    log_p = like.log_marginal(x, labels)
    assert log_p.shape == (labels.shape[0],)
    ref = torch.stack([like.log_marginal(x, labels[i]) for i in range(0, labels.shape[0], 97)])
    assert torch.allclose(log_p[::97], ref, atol=1e-12, rtol=0)
    log_p32 = like.log_marginal(x.float(), labels)
    assert log_p32.dtype == torch.float32
    assert (log_p32.double() - log_p).abs().max().item() < 1e-3


@pytest.mark.parametrize("family", [0, 1])
def test_float32_scatter_form_with_large_offset(family):
    """Points near 1e3: the scatter form keeps float32 within 1e-3 nats of float64."""
    d = 2
    like = (
        IsotropicGaussian(sigma_mu=1e3, sigma_x=1.0, dim=d)
        if family == 0
        else NormalInverseWishart(dim=d, mu0=1e3, kappa0=1.0)
    )
    x = 1e3 + _data(10, d, 2, scale=1.0)
    labels = torch.tensor([0, 0, 0, 1, 1, 0, 1, 2, 2, 0])
    ref = like.log_marginal(x, labels)
    got = like.log_marginal(x.float(), labels)
    assert got.dtype == torch.float32
    assert abs(got.item() - ref.item()) < 1e-3
    # Control: the naive scatter sum(x^2) - n xbar^2 in float32 is far off for the same data.
    x32 = x.float()
    blocks = [x32[labels == k] for k in range(3)]
    naive = sum(((b**2).sum() - b.shape[0] * (b.mean(0) ** 2).sum()).item() for b in blocks)
    exact = like.block_statistics(x, labels).scatter
    if family == 1:
        exact = torch.diagonal(exact, dim1=-2, dim2=-1)
    exact = exact.sum().item()
    assert abs(naive - exact) > 1e-2


# ---------------------------------------------------- isotropic posterior of the means
@given(n=st.integers(1, 7), d=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_isotropic_posterior_matches_gaussian_conditioning(n, d, seed):
    sigma_mu, sigma_x = 2.0, 0.6
    like = IsotropicGaussian(sigma_mu=sigma_mu, sigma_x=sigma_x, dim=d)
    x, labels = _data(n, d, seed), _labels(n, 3, seed)
    k_slots = int(labels.max()) + 3
    # Joint Gaussian of (mu (K D), x (N D)) with x = Z mu + noise; condition on x.
    z = torch.kron(torch.nn.functional.one_hot(labels, k_slots).double(), torch.eye(d, dtype=F64))
    cov_mm = sigma_mu**2 * torch.eye(k_slots * d, dtype=F64)
    cov_xm = z @ cov_mm
    cov_xx = cov_xm @ z.T + sigma_x**2 * torch.eye(n * d, dtype=F64)
    gain = torch.linalg.solve(cov_xx, cov_xm).T
    loc = gain @ x.reshape(-1)
    cov = cov_mm - gain @ cov_xm
    post = like.posterior_params(x, labels, num_clusters=k_slots)
    assert post.loc.shape == (k_slots, d) and post.scale.shape == (k_slots, d)
    assert torch.allclose(post.loc.reshape(-1), loc, atol=1e-9, rtol=0)
    assert torch.allclose(post.scale.reshape(-1) ** 2, torch.diagonal(cov), atol=1e-9, rtol=0)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-9, rtol=0)


# ---------------------------------------------------------------------- dtype, device
@pytest.mark.parametrize("family", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_outputs_follow_dtype(family, dtype):
    like = _likelihoods(2, 0)[family]
    x = _data(5, 2, 0, dtype=dtype)
    labels = torch.tensor([0, 1, 0, 2, 1])
    assert like.log_marginal(x, labels).dtype == dtype
    assert like.subset_log_marginals(x).dtype == dtype
    assert like.log_predictive(x[0], x, labels).dtype == dtype
    assert all(t.dtype == dtype for t in like.posterior_params(x, labels))
    assert all(t.dtype == dtype for t in like.block_statistics(x, labels))


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(sigma_mu=0.0, sigma_x=1.0, dim=2), "sigma_mu"),
        (dict(sigma_mu=-1.0, sigma_x=1.0, dim=2), "sigma_mu"),
        (dict(sigma_mu=1.0, sigma_x=float("nan"), dim=2), "sigma_x"),
        (dict(sigma_mu=1.0, sigma_x=float("inf"), dim=2), "sigma_x"),
        (dict(sigma_mu=1.0, sigma_x=1.0, dim=0), "dim"),
    ],
)
def test_isotropic_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        IsotropicGaussian(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(dim=2, kappa0=0.0), "kappa0"),
        (dict(dim=2, nu0=1.0), "nu0"),
        (dict(dim=2, nu0=float("nan")), "nu0"),
        (dict(dim=2, scale=torch.tensor([[1.0, 0.5], [0.0, 1.0]])), "scale"),
        (dict(dim=2, scale=torch.tensor([[1.0, 2.0], [2.0, 1.0]])), "scale"),
        (dict(dim=2, scale=torch.eye(3)), "scale"),
        (dict(dim=2, mu0=torch.zeros(3)), "mu0"),
    ],
)
def test_niw_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NormalInverseWishart(**kwargs)


@pytest.mark.parametrize("family", [0, 1])
def test_rejects_bad_data(family):
    like = _likelihoods(2, 0)[family]
    x = _data(4, 2, 0)
    labels = torch.tensor([0, 1, 0, 1])
    bad_x = x.clone()
    bad_x[2, 0] = float("nan")
    cases = [
        (lambda: like.log_marginal(bad_x, labels), "x"),
        (lambda: like.log_marginal(x.clone().fill_(math.inf), labels), "x"),
        (lambda: like.log_marginal(x[0], labels), "x"),
        (lambda: like.log_marginal(x.reshape(1, 1, 4, 2), labels), "x"),
        (lambda: like.log_marginal(_data(4, 3, 0), labels), "x"),
        (lambda: like.log_marginal(x.long(), labels), "x"),
        (lambda: like.log_marginal(x, labels[:3]), "labels"),
        (lambda: like.log_marginal(x, torch.tensor([1, 0, 0, 1])), "labels"),
        (lambda: like.log_marginal(x, torch.tensor([0, 2, 0, 1])), "labels"),
        (lambda: like.log_marginal(x, labels.double()), "labels"),
        (lambda: like.log_marginal(x, labels, torch.tensor([True, False, True, True])), "mask"),
        (lambda: like.log_marginal(x, labels, mask=torch.ones(3, dtype=torch.bool)), "mask"),
        (lambda: like.block_statistics(x, labels, num_clusters=1), "num_clusters"),
        (lambda: like.subset_log_marginals(x.unsqueeze(0)), "x"),
        (lambda: like.subset_log_marginals(bad_x), "x"),
        (lambda: like.subset_log_marginals(torch.zeros(23, 2)), "x"),
        (lambda: like.log_predictive(x[:, :1], x, labels), "x_new"),
        (lambda: like.log_predictive(bad_x[2], x, labels), "x_new"),
        (lambda: like.log_predictive(x[:3], x.expand(2, 4, 2), labels), "x_new"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


def test_padding_is_ignored_even_if_not_finite():
    like = IsotropicGaussian(sigma_mu=2.0, sigma_x=1.0, dim=2)
    x = _data(4, 2, 0).unsqueeze(0)
    mask = torch.tensor([[True, True, True, False]])
    x[0, 3] = math.nan  # padding is ignored
    labels = torch.tensor([[0, 1, 0, -1]])
    got = like.log_marginal(x, labels, mask)
    assert torch.isfinite(got).all()
    assert abs(got.item() - like.log_marginal(x[0, :3], labels[0, :3]).item()) < 1e-12
