"""Conjugate Gaussian cluster likelihoods ``p(x_i | mu_{c_i})`` of Eq. (1) in [1].

Two conjugate families share one interface (:class:`ConjugateGaussian`):

* :class:`IsotropicGaussian`: ``mu_k ~ N(0, sigma_mu^2 I_D)``, ``x_i ~ N(mu_{c_i}, sigma_x^2 I_D)``
  (the paper's MoG preset is ``D = 2, sigma_mu = 10, sigma_x = 1``, App. A.1 in [1]);
* :class:`NormalInverseWishart`: unknown mean and covariance per cluster,
  ``Sigma_k ~ IW(nu0, Psi)``, ``mu_k | Sigma_k ~ N(mu0, Sigma_k / kappa0)`` [2].

Because the cluster parameters integrate out in closed form, everything is a function of the
sufficient statistics of each block (count ``n``, mean ``xbar`` and within-block scatter ``S``):

* :meth:`~ConjugateGaussian.log_marginal`: ``log p(x | c) = sum_k log p(x_{S_k})``, batched
  over labellings and over padded sets;
* :meth:`~ConjugateGaussian.subset_log_marginals`: ``log p(x_S)`` for all ``2^N`` subsets ``S``
  of one small set, the table of the exact posterior (:mod:`gfncp_pyro.exact`);
* :meth:`~ConjugateGaussian.posterior_params`: the conjugate posterior of the cluster
  parameters given ``(x, c)``, which the guide samples ``mu`` from;
* :meth:`~ConjugateGaussian.log_predictive`: the posterior predictive of a new point joining
  each cluster or opening a new one.

Statistics use the *within-cluster scatter form*: the block means first, then
``S = sum_i (x_i - xbar)(x_i - xbar)^T`` in a second pass (never ``sum x^2 - n xbar^2``, which
cancels catastrophically in float32 when the points sit far from the origin). All functions
follow the dtype and device of ``x`` and work in log space.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] K. P. Murphy. Conjugate Bayesian analysis of the Gaussian distribution. Technical note,
    2007 (Secs. 2.3 and 9).
"""


from .base import (MAX_STANDARDISED, MAX_SUBSET_N, SIGMA_RANGE, BlockStatistics, ConjugateGaussian, NIWPosterior,
                   NormalPosterior)
from .isotropic import IsotropicGaussian
from .niw import NormalInverseWishart

__all__ = [
    "MAX_SUBSET_N",
    "MAX_STANDARDISED",
    "SIGMA_RANGE",
    "ConjugateGaussian",
    "IsotropicGaussian",
    "NormalInverseWishart",
    "BlockStatistics",
    "NormalPosterior",
    "NIWPosterior",
]
