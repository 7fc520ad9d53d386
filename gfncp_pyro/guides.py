"""A trained GFNCP (or NCP) network as a Pyro guide for the CRP mixture of Eq. (1) in [1].

:class:`GFNCPGuide` is used like Pyro's autoguides: build it from the model, pass it to
``pyro.infer`` (``Importance``, ``SVI``, ``CSIS``, ``Predictive``)::

    guide = GFNCPGuide.from_pretrained("mog2d-small")      # the network and its model
    model = guide.model
    with torch.no_grad():                                    # no gradients needed: faster
        posterior = pyro.infer.Importance(model, guide, num_samples=1000).run(x)

It samples the partition ``"c"`` from :class:`~gfncp_pyro.distributions.AmortizedPartition`
(the network's ``q(c | x)``, Eqs. 21 and 30 in [1]) and the cluster means ``"mu"`` from their
exact conjugate posterior ``p(mu | c, x)``, so that an importance weight
``p(c, mu, x) / q(c, mu | x)`` equals the collapsed ``p(c, x) / q(c | x)``: the means add no
variance. With the ``"padded"`` model the ``N - K`` unused slots are drawn from the prior, as in
the model; with the ``"collapsed"`` model there is no ``"mu"`` site.

**Speed.** Pyro calls a guide once per sample. The guide keeps the encodings of the points it
was last called with and decodes partitions ahead in batches (:class:`~gfncp_pyro.guide_cache.
DrawCache`); ``log q`` of a sampled partition comes from the decoding pass and is
differentiated (by teacher forcing) only if a backward pass asks for it. Under
``torch.no_grad()`` the guide does not register its network's parameters with Pyro's parameter
store (nothing can train them there), which saves most of a call's cost. Decoding one set is a
chain of small operations: one torch thread (``torch.set_num_threads(1)``) is fastest for small
sets, and on a busy machine OpenMP's spin-waiting makes more threads several times slower.

**Particles.** Under a vectorised particle plate (``Trace_ELBO(vectorize_particles=True)``,
``vectorized_importance_weights``, ``Predictive(parallel=True)``) the ``"c"`` site has batch
shape ``(P, 1)`` and all ``P`` partitions are decoded in one pass; this needs the ``"padded"``
or ``"collapsed"`` model (the ``"dynamic"`` one has a different number of means per particle).
For the same reason sequential ``Predictive`` and ``EmpiricalMarginal(posterior, "mu")`` on the
dynamic model raise a ``ValueError`` naming the padded variant (its means are
:class:`~gfncp_pyro.models.DynamicMeans`).

The guide holds its own copy of the network, registered with Pyro under the guide's unique name,
so two guides never share parameters, and training one (SVI, CSIS, :func:`gfncp_pyro.infer.fit`)
leaves the network it was built from untouched.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import copy
import itertools

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from . import decoding
from .config import TrainConfig
from .distributions import AmortizedPartition
from .distributions.provenance import with_provenance_of
from .guide_cache import DrawCache
from .loading import check_model, load_pretrained, network_config
from .models import CRPMixture, DynamicMeansNormal, dynamic_batch_error
from .nn import EnergyNet

__all__ = ["GFNCPGuide"]

_GUIDE_NUMBERS = itertools.count()


class GFNCPGuide(PyroModule):
    """The network's ``q(c | x)`` and the exact ``p(mu | c, x)`` as a Pyro guide.

    Call it with the model's arguments: ``guide(x)``, or ``guide(observations={"x": x})`` as
    CSIS and reweighted wake-sleep do (``observations["x"]``, when given, takes precedence over
    ``x``). One set per call: points ``(N, D)``.

    :param CRPMixture model: the model this guide approximates the posterior of (any variant).
    :param EnergyNet network: a trained network for points of dimension ``model.dim``; the
        guide copies it (see the module docstring).
    :param TrainConfig config: the network's training config; default: the one a network from
        :func:`~gfncp_pyro.loading.load_pretrained` carries. When known, ``model`` must have
        the hyper-parameters the network was trained for.
    :param bool force: use the network for a model with other hyper-parameters (a warning
        instead of :class:`~gfncp_pyro.loading.ModelMismatchError`).
    :param bool random_order: each call draws a uniformly random order of the points and
        scores ``c`` along it (the order is kept in the ``"c"`` site's distribution); default:
        the identity order.
    :param generator: a :class:`torch.Generator` or ``int`` seed for the guide's randomness;
        ``None`` (default) follows torch's global generator like Pyro's own distributions, so
        :func:`pyro.set_rng_seed` makes runs reproducible.
    :param str name: the guide's name in Pyro's parameter store (default: unique per guide).
    """

    def __init__(
        self,
        model: CRPMixture,
        network: EnergyNet,
        *,
        config: TrainConfig | None = None,
        force: bool = False,
        random_order: bool = False,
        generator: torch.Generator | int | None = None,
        name: str | None = None,
    ):
        if not isinstance(model, CRPMixture):
            raise ValueError(f"model must be a gfncp_pyro.models.CRPMixture, got {type(model).__name__}")
        if not isinstance(network, EnergyNet):
            raise ValueError(f"network must be a gfncp_pyro.nn.EnergyNet, got {type(network).__name__}")
        if network.point_shape != (model.dim,):
            raise ValueError(
                f"network clusters points of shape {network.point_shape} but the model's points "
                f"have shape ({model.dim},); use a network trained for dim={model.dim}"
            )
        if config is not None and not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a gfncp_pyro.config.TrainConfig or None, got {type(config).__name__}")
        check_model(model, config if config is not None else network_config(network), force=bool(force))
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        if isinstance(generator, int) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(generator)
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")
        super().__init__(name or f"GFNCPGuide{next(_GUIDE_NUMBERS)}")
        self.model = model
        self.network = copy.deepcopy(network).eval()
        self.random_order = bool(random_order)
        self.generator = generator
        self._draws = DrawCache(self._modules["network"], self.random_order, generator)
        self._in_call = False

    @classmethod
    def from_pretrained(cls, spec, model: CRPMixture | None = None, *, variant="dynamic",
                        map_location="cpu", **kwargs) -> "GFNCPGuide":
        """A guide from a shipped model or a checkpoint (:func:`~gfncp_pyro.loading.load_pretrained`).

        :param spec: ``"mog2d-small"``, ``"pretrained:NAME:OBJECTIVE"`` or a checkpoint path.
        :param CRPMixture model: the model to guide; default: the one the network was trained
            for, in the given ``variant``. Another model must have the same hyper-parameters
            unless ``force=True``.
        :param kwargs: the other arguments of :class:`GFNCPGuide` (``force``, ``random_order``,
            ``generator``, ``name``).
        """
        network, trained, config = load_pretrained(spec, map_location=map_location, variant=variant)
        if model is None:
            if trained is None:
                raise ValueError(f"{spec} was trained on {config.data.name} data; GFNCPGuide needs a model "
                                 "trained on a CRP mixture of Gaussians")
            model = trained
        return cls(model, network, config=config, **kwargs)

    def clear_cache(self) -> None:
        """Forget the cached encodings and draws (only needed after editing the network's
        parameters through ``.data``, which torch's version counters do not see)."""
        self._draws.clear()

    def __call__(self, *args, **kwargs):
        self._in_call, outer = True, self._in_call
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self._in_call = outer

    # ------------------------------------------------------------------------ inputs
    def _points(self, x, num_points, observations) -> torch.Tensor:
        if observations is not None:
            if not isinstance(observations, dict):
                raise ValueError(
                    f"observations must be a dict of site values, got {type(observations).__name__}"
                )
            x = observations.get("x", x)
        if x is None:
            raise ValueError(
                "the guide needs the observed points: call guide(x) or "
                "guide(observations={'x': x})"
            )
        if isinstance(x, torch.Tensor) and x.ndim == 3:
            raise ValueError(
                f"x has shape {tuple(x.shape)}: GFNCPGuide clusters one set (N, D) per call, like "
                "the model. For many partitions of one set use vectorised particles "
                "(vectorize_particles=True with the padded or collapsed model), or "
                "gfncp_pyro.infer.importance / gfncp_pyro.infer.fit."
            )
        x = self.model.check_points(x)
        if num_points is not None and num_points != x.shape[0]:
            raise ValueError(f"num_points={num_points} disagrees with x of {x.shape[0]} points")
        return x

    def _network_for_call(self) -> EnergyNet:
        """The network; with autograd on and inside a call, registered with Pyro's store."""
        if not (self._in_call and torch.is_grad_enabled()):
            return self._modules["network"]
        network = self.network  # PyroModule registers its parameters here (pyro.module)
        if not pyro.settings.get("module_local_params"):
            store = pyro.get_param_store()
            trained = next((p for p in network.parameters() if p.requires_grad), None)
            if trained is not None and store.param_name(trained) is None:
                raise ValueError(
                    "Pyro's parameter store already holds other tensors under this guide's names "
                    "(a guide of the same name was created before); call pyro.clear_param_store() "
                    "or give this guide another name"
                )
        return network

    # ------------------------------------------------------------------------ the guide
    def partition_distribution(self, x: torch.Tensor, generator=None) -> AmortizedPartition:
        """``q(c | x)`` of this guide's network for one set ``x`` ``(N, D)``.

        The points are converted to the network's dtype and device; a random order is drawn if
        the guide uses random orders. This builds a fresh distribution (no cached draws).

        :param generator: overrides the guide's generator for this distribution.
        """
        network = self._modules["network"]
        x = x.to(next(network.parameters()))
        generator = self.generator if generator is None else generator
        return AmortizedPartition(network, x, random_order=self.random_order, generator=generator)

    def _mean_posterior(self, x: torch.Tensor, c: torch.Tensor):
        """Conjugate posterior of the means given ``c`` ``(*batch, N)``: ``loc, scale``
        ``(K, D)`` (``(N, D)`` for the padded model; ``(*batch[:-1], N, D)`` under a particle
        plate, whose ``c`` has a trailing batch dimension of size 1 at the clusters plate).

        Under ``TraceGraph_ELBO`` the sampled ``c`` carries Pyro's provenance; it is put back on
        the parameters, so the graph still records that ``"mu"`` depends on ``"c"``.
        """
        def compute(c):
            n, dim = x.shape
            labels = c.reshape(-1, n)
            rows = labels.shape[0]
            if self.model.variant == "padded" or c.ndim > 1:
                slots = n
            else:
                slots = int(c.max()) + 1
            counts = x.new_zeros(rows, slots).scatter_add_(1, labels, x.new_ones(rows, n))
            index = labels.unsqueeze(-1).expand(rows, n, dim)
            sums = x.new_zeros(rows, slots, dim).scatter_add_(1, index, x.expand(rows, n, dim))
            means = sums / counts.clamp(min=1).unsqueeze(-1)
            loc, scale = self.model.likelihood.posterior_from_stats(counts, means, torch.zeros_like(counts))
            lead = c.shape[:-2] if c.ndim > 1 else ()
            return loc.reshape(lead + (slots, dim)), scale.reshape(lead + (slots, dim))

        return with_provenance_of(c, compute)

    def forward(self, x: torch.Tensor | None = None, num_points: int | None = None, *,
                observations=None, replicate: bool = False):
        """Sample the latents of the model: ``"c"`` and, unless collapsed, ``"mu"``.

        :param torch.Tensor x: observed points ``(N, D)``.
        :param int num_points: ``N`` (optional; checked against ``x``).
        :param dict observations: ``{"x": points}`` (CSIS, reweighted wake-sleep).
        :param bool replicate: ignored (the model's flag for replicated data; the guide always
            conditions on the given points).
        :returns: ``{"c": labels (N,), "mu": means (K, D)}``; ``"mu"`` is ``(N, D)`` for the
            padded model and absent for the collapsed one. Under a particle plate of size
            ``P``: ``c`` ``(P, 1, N)`` and ``mu`` ``(P, N, D)`` (padded), or ``c`` ``(P, N)``
            (collapsed).
        :raises ValueError: on batched points ``(P, N, D)``, or for the dynamic model inside a
            vectorised particle plate.
        """
        x = self._points(x, num_points, observations)
        network = self._network_for_call()
        if self._draws.network is not network:  # the network was replaced
            self._draws = DrawCache(network, self.random_order, self.generator)
        q = self._draws.distribution(x.to(next(network.parameters())))
        c = pyro.sample("c", q)
        latents = {"c": c}
        if self.model.variant == "dynamic" and c.ndim > 1:
            raise ValueError(dynamic_batch_error("GFNCPGuide", tuple(c.shape)))
        if self.model.variant != "collapsed":
            loc, scale = self._mean_posterior(x, c)
            normal = DynamicMeansNormal if self.model.variant == "dynamic" else dist.Normal
            with pyro.plate("clusters", loc.shape[-2]):
                latents["mu"] = pyro.sample("mu", normal(loc, scale).to_event(1))
        self._draws.end_call()
        return latents

    @torch.no_grad()
    def median(self, x: torch.Tensor | None = None, num_points: int | None = None, *, observations=None):
        """A point estimate: the greedy partition (most probable step by step, identity order)
        and, unless collapsed, the posterior means of the clusters given it.

        :returns: ``{"c": labels (N,), "mu": means}`` with shapes as in :meth:`forward`.
        """
        x = self._points(x, num_points, observations)
        network = self._modules["network"]
        labels, _ = decoding.greedy(network, x.to(next(network.parameters())))
        latents = {"c": labels.to(x.device)}
        if self.model.variant != "collapsed":
            latents["mu"] = self._mean_posterior(x, latents["c"])[0]
        return latents
