"""The generative model of Eq. (1) in [1] as Pyro models, and its vectorised sampler.

A Chinese Restaurant Process prior over partitions and a conjugate isotropic Gaussian mixture::

    c     ~ CRP(alpha, N)                       site "c", one event of shape (N,)
    mu_k  ~ Normal(0, sigma_mu^2 I_D)           site "mu", in the "clusters" plate
    x_i   ~ Normal(mu_{c_i}, sigma_x^2 I_D)     site "x", in the "points" plate

``sigma_mu`` and ``sigma_x`` are standard deviations; the paper's MoG preset (App. A.1 in [1])
is ``D = 2, sigma_mu = 10, sigma_x = 1``. Three variants of the same distribution over
``(c, x)``:

* ``"dynamic"``: the clusters plate has the K clusters of ``c`` (``mu`` is ``(K, D)``);
* ``"padded"``: the clusters plate has N slots (``mu`` is ``(N, D)``), empty slots drawn from
  the prior, so every trace has the same shapes;
* ``"collapsed"``: the means are integrated out; ``x`` is one observed site whose density is
  the conjugate marginal (:class:`~gfncp_pyro.distributions.GaussianMixtureMarginal`).

Shapes of the sites, for one trace and with ``S`` samples or particles (``pyro.infer.
Predictive``, vectorised particles: Pyro adds the sample dimension left of the model's plates,
so sites outside every plate get a dimension of size 1 in the padded model)::

    variant     one trace                     Predictive(num_samples=S) / particle plate of S
    dynamic     c (N,) mu (K, D) x (N, D)     not supported: K differs between samples (error)
    padded      c (N,) mu (N, D) x (N, D)     c (S, 1, N)  mu (S, N, D)  x (S, N, D)
    collapsed   c (N,)           x (N, D)     c (S, N)                   x (S, N, D)

``Predictive`` and ``EmpiricalMarginal(posterior, "mu")`` stack the values of many traces, so
they need the padded (or collapsed) variant: with the dynamic variant, stacking means of
different ``K`` raises a ``ValueError`` that names the padded variant (its ``"mu"`` values are
:class:`DynamicMeans`, plain tensors otherwise), and inside a vectorised plate (``parallel=True``)
the model and the guide raise one too.

Conditioning follows Pyro's conventions: ``model(x)``, ``model(observations={"x": x})`` (as
``pyro.infer.CSIS`` calls it), ``model(num_points=N)`` to generate, and ``model(x,
replicate=True)`` to generate a replicated data set of the size of ``x`` without conditioning
on it (the posterior predictive: ``Predictive(model, guide=guide, num_samples=S)(x,
replicate=True)["x"]``; ``Predictive(poutine.uncondition(model), ...)`` does the same).

:meth:`CRPMixture.sample_batch` draws padded batches of ``(c, x)`` with different ``N`` and
``K`` per set from exactly this distribution, without Pyro or Python loops: it is the training
data source for Gaussian mixtures.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from typing import Literal

import pyro
import pyro.distributions as dist
import torch

from ._checks import positive_float
from .batch import SetBatch
from .distributions import ChineseRestaurantProcess, GaussianMixtureMarginal, sample_crp_labels
from .distributions.provenance import with_provenance_of
from .likelihoods import IsotropicGaussian
from .partitions import PAD_LABEL, lengths_to_mask

__all__ = ["CRPMixture", "DynamicMeans", "DynamicMeansNormal", "Variant", "dynamic_batch_error",
           "dynamic_stack_error", "mog2d"]

Variant = Literal["dynamic", "padded", "collapsed"]


def dynamic_batch_error(who: str, shape: tuple) -> str:
    """The message of the error raised when the dynamic variant meets batched partitions."""
    return (
        f"{who}: the partition 'c' has shape {shape}, i.e. several partitions at once (a "
        "vectorised particle plate: vectorize_particles=True, vectorized_importance_weights, "
        "Predictive(parallel=True)). The 'dynamic' variant has a different number of means per "
        "partition and cannot be batched; use CRPMixture(..., variant='padded') (mu of shape "
        "(N, D)) or variant='collapsed' (no mu), or run the particles sequentially"
    )


def dynamic_stack_error(shapes) -> str:
    """The message of the error raised when means of the dynamic variant of different sizes are
    stacked (``pyro.infer.Predictive``, ``EmpiricalMarginal(posterior, "mu")``)."""
    return (
        f"cannot stack the cluster means 'mu' of the 'dynamic' CRPMixture: their shapes {shapes} "
        "differ, because each trace has its own number of clusters K (Predictive and "
        "EmpiricalMarginal stack the values of many traces). Use CRPMixture(..., variant='padded') "
        "(mu of shape (N, D) in every trace) or variant='collapsed' (no mu), e.g. "
        "model.with_variant('padded') with GFNCPGuide(model.with_variant('padded'), network)"
    )


def _plain(value):
    """``value`` with every :class:`DynamicMeans` in it (also in lists, tuples, dicts) a plain tensor."""
    if isinstance(value, DynamicMeans):
        return value.as_subclass(torch.Tensor)
    if type(value) in (list, tuple):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


class DynamicMeans(torch.Tensor):
    """The value of the dynamic variant's ``"mu"`` site ``(K, D)``: a plain tensor (every
    operation on it returns a plain ``torch.Tensor``), except that stacking means of different
    ``K`` raises a ``ValueError`` that names the padded variant instead of torch's ``stack
    expects each tensor to be equal size``."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = {} if kwargs is None else kwargs
        if func is torch.stack:
            tensors = args[0] if args else kwargs.get("tensors", ())
            shapes = sorted({tuple(t.shape) for t in tensors})
            if len(shapes) > 1:
                raise ValueError(dynamic_stack_error(shapes))
        return func(*_plain(args), **_plain(kwargs))


class DynamicMeansNormal(dist.Normal):
    """``Normal`` whose samples are :class:`DynamicMeans` (the dynamic variant's ``"mu"``).

    Pyro's provenance (``TraceGraph_ELBO``) on a sample is kept."""

    def sample(self, sample_shape=torch.Size()):
        return with_provenance_of(super().sample(sample_shape), _as_dynamic_means)

    def rsample(self, sample_shape=torch.Size()):
        return with_provenance_of(super().rsample(sample_shape), _as_dynamic_means)


def _as_dynamic_means(value: torch.Tensor) -> torch.Tensor:
    return value.as_subclass(DynamicMeans)


def _means_of_points(mu: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``mu[c]``: the mean of each point's cluster, for ``c`` ``(N,)`` and ``mu`` ``(K, D)`` or,
    batched, ``c`` ``(*B, 1, N)`` and ``mu`` ``(*B, S, D)`` (the 1 sits at the plates' dim)."""
    if c.ndim == 1:
        return mu[c]
    index = c.squeeze(-2)
    return mu.gather(-2, index.unsqueeze(-1).expand(index.shape + mu.shape[-1:]))


class CRPMixture:
    """CRP mixture of isotropic Gaussians (Eq. 1 in [1]) as a Pyro model.

    Calling the object runs the model: ``mixture(x)`` conditions on points ``x`` of shape
    ``(N, D)``; ``mixture(num_points=N)`` generates them.

    :param float alpha: CRP concentration (> 0).
    :param float sigma_mu: standard deviation of the prior of the cluster means.
    :param float sigma_x: standard deviation of the points around their cluster mean.
    :param int dim: dimension ``D`` of the points.
    :param variant: ``"dynamic"``, ``"padded"`` or ``"collapsed"`` (see the module docstring).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        sigma_mu: float = 10.0,
        sigma_x: float = 1.0,
        dim: int = 2,
        variant: Variant = "dynamic",
    ):
        self.alpha = positive_float(alpha, "alpha")
        self.likelihood = IsotropicGaussian(sigma_mu=sigma_mu, sigma_x=sigma_x, dim=dim)
        if variant not in ("dynamic", "padded", "collapsed"):
            raise ValueError(
                f"variant must be 'dynamic', 'padded' or 'collapsed', got {variant!r}"
            )
        self.variant = variant

    @property
    def sigma_mu(self) -> float:
        return float(self.likelihood.sigma_mu)

    @property
    def sigma_x(self) -> float:
        return float(self.likelihood.sigma_x)

    @property
    def dim(self) -> int:
        return int(self.likelihood.dim)

    def with_variant(self, variant: Variant) -> "CRPMixture":
        """The same distribution with another variant."""
        return CRPMixture(self.alpha, self.sigma_mu, self.sigma_x, self.dim, variant)

    def __repr__(self) -> str:
        return (
            f"CRPMixture(alpha={self.alpha}, sigma_mu={self.sigma_mu}, sigma_x={self.sigma_x}, "
            f"dim={self.dim}, variant={self.variant!r})"
        )

    # ------------------------------------------------------------------ the Pyro model
    def check_points(self, x: torch.Tensor) -> torch.Tensor:
        """Validate observed points ``(N, D)``; raise ``ValueError`` with what to fix."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"x must be a floating-point torch.Tensor of shape (N, {self.dim})")
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (N, {self.dim}) (one data set), got {tuple(x.shape)}; "
                "for several data sets call the model once per set"
            )
        if x.shape[0] == 0:
            raise ValueError("x has no points (N = 0); a data set needs at least one point")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")
        return x

    def _alpha(self, dtype, device) -> torch.Tensor:
        key = (dtype, device)
        cache = self.__dict__.setdefault("_alpha_cache", {})
        if key not in cache:
            cache[key] = torch.tensor(self.alpha, dtype=dtype, device=device)
        return cache[key]

    def _inputs(self, x, num_points, observations):
        if observations is not None:
            if not isinstance(observations, dict):
                raise ValueError(f"observations must be a dict of site values, e.g. {{'x': x}}, "
                                 f"got {type(observations).__name__}")
            unknown = sorted(set(observations) - {"x"})
            if unknown:
                raise ValueError(f"observations may only hold the observed site 'x', got {unknown}; "
                                 "to fix latent sites use pyro.poutine.condition")
            x = observations.get("x", x)
        if x is not None:
            x = self.check_points(x)
            if num_points is not None and num_points != x.shape[0]:
                raise ValueError(f"num_points={num_points} disagrees with x of {x.shape[0]} points")
            return x, x.shape[0], x.dtype, x.device
        if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer when x is None, got {num_points!r}")
        return None, num_points, torch.get_default_dtype(), None

    def __call__(self, x: torch.Tensor | None = None, num_points: int | None = None, *,
                 observations: dict | None = None, replicate: bool = False):
        """Run the model. Returns the sampled or observed points ``(N, D)``.

        :param torch.Tensor x: observed points ``(N, D)``.
        :param int num_points: ``N`` when generating (or a check of ``x``).
        :param dict observations: ``{"x": points}``, Pyro's CSIS convention (takes precedence
            over ``x``).
        :param bool replicate: sample ``x`` (of the size of the given points) instead of
            conditioning on it: replicated data for the posterior predictive.
        """
        x, num_points, dtype, device = self._inputs(x, num_points, observations)
        observed = None if replicate else x
        c = pyro.sample("c", ChineseRestaurantProcess(self._alpha(dtype, device), num_points))
        if self.variant == "collapsed":
            marginal = GaussianMixtureMarginal(c, self.sigma_mu, self.sigma_x, self.dim)
            return pyro.sample("x", marginal, obs=observed)
        if self.variant == "dynamic" and c.ndim > 1:
            raise ValueError(dynamic_batch_error("CRPMixture", tuple(c.shape)))
        num_slots = num_points if self.variant == "padded" else int(c.max()) + 1
        zero = torch.zeros(self.dim, dtype=dtype, device=device)
        prior = DynamicMeansNormal if self.variant == "dynamic" else dist.Normal
        with pyro.plate("clusters", num_slots):
            mu = pyro.sample("mu", prior(zero, self.sigma_mu).to_event(1))
        with pyro.plate("points", num_points):
            return pyro.sample("x", dist.Normal(_means_of_points(mu, c), self.sigma_x).to_event(1),
                               obs=observed)

    # ------------------------------------------------------------ the vectorised sampler
    def sample_batch(
        self,
        lengths: torch.Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> SetBatch:
        """Draw one data set per entry of ``lengths`` from exactly this model's distribution.

        Labels come from the exact vectorised CRP sampler; the means of all ``N_max`` slots and
        the noise are drawn at once. Randomness is drawn on the CPU from ``generator`` (so a
        seed gives the same batch on every device) and then moved to ``device``.

        :param lengths: set sizes ``(B,)``, each >= 1.
        :returns: a :class:`~gfncp_pyro.batch.SetBatch` with ``means``.
        """
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if lengths.ndim != 1 or lengths.numel() == 0:
            raise ValueError(f"lengths must be a non-empty 1-D tensor (B,), got shape {tuple(lengths.shape)}")
        if bool((lengths < 1).any()):
            raise ValueError(f"every set needs at least one point, got lengths {lengths.tolist()}")
        batch, n_max = lengths.shape[0], int(lengths.max())
        alpha = torch.full((batch,), self.alpha, dtype=torch.float64)
        labels = sample_crp_labels(alpha, lengths, generator=generator)
        mask = lengths_to_mask(lengths, n_max)
        means = self.sigma_mu * torch.randn(
            (batch, n_max, self.dim), generator=generator, dtype=torch.float64
        )
        noise = self.sigma_x * torch.randn(
            (batch, n_max, self.dim), generator=generator, dtype=torch.float64
        )
        index = labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, self.dim)
        x = torch.where(mask.unsqueeze(-1), means.gather(1, index) + noise, 0.0)
        labels = torch.where(mask, labels, PAD_LABEL)
        return SetBatch(
            x=x.to(dtype=dtype, device=device),
            labels=labels.to(device),
            mask=mask.to(device),
            means=means.to(dtype=dtype, device=device),
        )


def mog2d(alpha: float = 6.0, variant: Variant = "dynamic") -> CRPMixture:
    """The paper's 2-D mixture of Gaussians (App. A.1 in [1]): ``sigma_mu = 10, sigma_x = 1``."""
    return CRPMixture(alpha=alpha, sigma_mu=10.0, sigma_x=1.0, dim=2, variant=variant)
