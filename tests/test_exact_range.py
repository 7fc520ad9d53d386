"""The exact maths on finite points of any magnitude (issue 12): either finite probabilities equal
to those of the same problem in well-scaled units, or the documented ``ValueError``.

Both families standardise in float64 (:meth:`~gfncp_pyro.likelihoods.ConjugateGaussian.standardise`):
the isotropic family divides by ``sigma_x`` (its prior mean 0 fixes the origin), the
Normal-inverse-Wishart family centres on ``mu0`` and divides by the scale of ``Psi``. Points whose
standardised coordinates exceed :data:`~gfncp_pyro.likelihoods.MAX_STANDARDISED` are refused.
"""

import math

import pytest
import torch

from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.likelihoods import MAX_STANDARDISED, SIGMA_RANGE, IsotropicGaussian, NormalInverseWishart
from gfncp_pyro.subset_dp import subset_posterior

N, D, ALPHA = 7, 2, 1.3


def _points(seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [6.0, -4.0], [-5.0, 5.0]], dtype=torch.float64)
    return centres[torch.arange(N) % 3] + torch.randn(N, D, generator=generator, dtype=torch.float64)


def _both(x, likelihood):
    exact = exact_posterior(x, ALPHA, likelihood=likelihood)
    dp = subset_posterior(x, ALPHA, likelihood=likelihood)
    return exact, dp


def _assert_finite_and_equal(big, small, log_unit):
    (exact_big, dp_big), (exact_small, dp_small) = big, small
    assert torch.isfinite(exact_big.log_posterior).all() and torch.isfinite(exact_big.log_evidence)
    assert torch.isfinite(dp_big.log_evidence)
    assert torch.equal(exact_big.labels, exact_small.labels)
    probs_big, probs_small = exact_big.log_posterior.exp(), exact_small.log_posterior.exp()
    assert float((probs_big - probs_small).abs().max()) < 1e-9
    assert float((exact_big.log_posterior - exact_small.log_posterior).abs().max()) < 1e-9
    # log p(x) changes by the Jacobian of the change of units only
    assert float(exact_big.log_evidence) == pytest.approx(float(exact_small.log_evidence) - log_unit, rel=1e-12, abs=1e-9)
    assert float(dp_big.log_evidence) == pytest.approx(float(exact_big.log_evidence), rel=1e-12, abs=1e-9)
    assert float((dp_big.coclustering() - dp_small.coclustering()).abs().max()) < 1e-9


@pytest.mark.parametrize("magnitude", [1e-140, 1e-30, 1e30, 1e140])
def test_isotropic_points_of_any_magnitude_in_their_own_units(magnitude):
    """Points near ``magnitude`` with hyper-parameters of the same scale: the same posterior as
    the well-scaled problem (``magnitude = 1``). (The isotropic family's sigmas lie in
    ``SIGMA_RANGE`` = [1e-150, 1e150]; points near 1e160 are covered by the NIW test below.)"""
    y = _points()
    small = _both(y, IsotropicGaussian(10.0, 1.0, D))
    big = _both(y * magnitude, IsotropicGaussian(10.0 * magnitude, magnitude, D))
    assert float((y * magnitude).abs().max()) > 0.5 * magnitude
    _assert_finite_and_equal(big, small, N * D * math.log(magnitude))


def test_niw_points_near_1e160_match_the_same_data_shifted_to_the_origin():
    """Points near 1e160 (spread 1e150) under a NIW prior centred on them: the posterior of the
    same data shifted to the origin (the subtraction is exact: Sterbenz)."""
    centre, spread = 1e160, 1e150
    y = _points(1) * spread
    x = y + centre
    assert torch.isfinite(x).all() and float(x.abs().min()) > 0.9e160
    shifted = x - centre
    nu0 = D + 2.0
    at_1e160 = _both(x, NormalInverseWishart(D, mu0=centre, kappa0=0.05, nu0=nu0, scale=spread**2 * torch.eye(D, dtype=torch.float64)))
    at_origin = _both(shifted, NormalInverseWishart(D, mu0=0.0, kappa0=0.05, nu0=nu0, scale=spread**2 * torch.eye(D, dtype=torch.float64)))
    _assert_finite_and_equal(at_1e160, at_origin, 0.0)
    # and the well-scaled problem (units of the spread)
    unit = _both(shifted / spread, NormalInverseWishart(D, mu0=0.0, kappa0=0.05, nu0=nu0, scale=torch.eye(D)))
    _assert_finite_and_equal(at_1e160, unit, N * D * math.log(spread))


@pytest.mark.parametrize("function", [exact_posterior, subset_posterior])
@pytest.mark.parametrize("family", ["isotropic", "niw"])
@pytest.mark.parametrize("magnitude", [1e160, 1e300])
def test_points_beyond_the_supported_range_raise_the_documented_error(function, family, magnitude):
    """Points near 1e160 with unit hyper-parameters: |x| / sigma_x = 1e160 > MAX_STANDARDISED."""
    assert magnitude > MAX_STANDARDISED
    x = _points() + magnitude
    assert torch.isfinite(x).all()
    likelihood = IsotropicGaussian(10.0, 1.0, D) if family == "isotropic" else NormalInverseWishart(D)
    with pytest.raises(ValueError, match=r"the exact maths supports at most 1e\+100") as info:
        function(x, ALPHA, likelihood=likelihood)
    assert "Rescale the data" in str(info.value)


@pytest.mark.parametrize("function", [exact_posterior, subset_posterior])
@pytest.mark.parametrize("sigmas", [(1e160, 1.0), (10.0, 1e160), (1e-160, 1.0), (1e149, 1e-149)])
def test_hyper_parameters_beyond_the_supported_range_raise_the_documented_error(function, sigmas):
    sigma_mu, sigma_x = sigmas
    assert SIGMA_RANGE == (1e-150, 1e150)
    with pytest.raises(ValueError, match=r"outside the supported range \[1e-150, 1e\+150\]"):
        function(_points(), ALPHA, sigma_mu=sigma_mu, sigma_x=sigma_x)


@pytest.mark.parametrize("function", [exact_posterior, subset_posterior])
def test_points_just_inside_the_range_are_finite(function):
    """Standardised coordinates up to ~MAX_STANDARDISED / 10: finite, and equal to the problem in
    units of sigma_x (here the prior is so wide that the ratio matters, not the offset)."""
    magnitude = MAX_STANDARDISED / 10
    x = _points() * magnitude
    result = function(x, ALPHA, likelihood=IsotropicGaussian(10.0 * magnitude, 1.0, D))
    assert torch.isfinite(result.log_evidence)
    if function is exact_posterior:
        assert torch.isfinite(result.log_posterior).all()
        assert float(torch.logsumexp(result.log_posterior, 0)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("function", [exact_posterior, subset_posterior])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_points_are_refused(function, value):
    x = _points()
    x[3, 1] = value
    with pytest.raises(ValueError):
        function(x, ALPHA)
