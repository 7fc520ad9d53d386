"""A trained GFNCP (or NCP) network as a Pyro guide for the CRP mixture of Eq. (1) in [1].

:class:`GFNCPGuide` is used like Pyro's autoguides: build it from the model, pass it to
``pyro.infer`` (``Importance``, ``SVI``, ``CSIS``, ``Predictive``)::

    model = CRPMixture(alpha=1.0, sigma_mu=5.0, sigma_x=1.0, dim=2)
    guide = GFNCPGuide(model, load_pretrained("mog2d-small", "gfncp"))
    posterior = pyro.infer.Importance(model, guide, num_samples=1000).run(x)

It samples the partition ``"c"`` from :class:`~gfncp_pyro.distributions.AmortizedPartition`
(the network's ``q(c | x)``, Eqs. 21 and 30 in [1]) and the cluster means ``"mu"`` from their
exact conjugate posterior ``p(mu | c, x)``, so that an importance weight
``p(c, mu, x) / q(c, mu | x)`` equals the collapsed ``p(c, x) / q(c | x)``: the means add no
variance. With the ``"padded"`` model the ``N - K`` unused slots are drawn from the prior, as in
the model; with the ``"collapsed"`` model there is no ``"mu"`` site.

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
from pyro.ops.provenance import detach_provenance, get_provenance, track_provenance

from . import decoding
from .distributions import AmortizedPartition
from .models import CRPMixture
from .nn import EnergyNet

__all__ = ["GFNCPGuide"]

_GUIDE_NUMBERS = itertools.count()


class GFNCPGuide(PyroModule):
    """The network's ``q(c | x)`` and the exact ``p(mu | c, x)`` as a Pyro guide.

    Call it with the model's arguments: ``guide(x)``, or ``guide(num_points=N,
    observations={"x": x})`` as CSIS and reweighted wake-sleep do (``observations["x"]``, when
    given, takes precedence over ``x``). One set per call: points ``(N, D)``.

    :param CRPMixture model: the model this guide approximates the posterior of (any variant).
    :param EnergyNet network: a trained network for points of dimension ``model.dim``; the
        guide copies it (see the module docstring).
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
                "guide(num_points=N, observations={'x': x})"
            )
        if isinstance(x, torch.Tensor) and x.ndim == 3:
            raise ValueError(
                f"x has shape {tuple(x.shape)}: GFNCPGuide clusters one set (N, D) per call, like "
                "the model. Batched observations come from vectorised particles (e.g. "
                "ReweightedWakeSleep(vectorize_particles=True)); use vectorize_particles=False, "
                "or gfncp_pyro.infer.importance / gfncp_pyro.infer.fit, which are vectorised."
            )
        x = self.model.check_points(x)
        if num_points is not None and num_points != x.shape[0]:
            raise ValueError(f"num_points={num_points} disagrees with x of {x.shape[0]} points")
        return x

    def _registered_network(self) -> EnergyNet:
        """``self.network``; inside a call this registers it with Pyro's parameter store."""
        network = self.network
        # Only inside a call of the guide does the attribute access above register the network
        # (PyroModule's context); then a foreign tensor under our name means a name clash.
        if self._pyro_context.active and not pyro.settings.get("module_local_params"):
            store = pyro.get_param_store()
            trained = [p for p in network.parameters() if p.requires_grad]
            if trained and store.param_name(trained[0]) is None:
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
        the guide uses random orders.

        :param generator: overrides the guide's generator for this distribution.
        """
        network = self._registered_network()
        x = x.to(next(network.parameters()))
        generator = self.generator if generator is None else generator
        return AmortizedPartition(network, x, random_order=self.random_order, generator=generator)

    def _mean_posterior(self, x: torch.Tensor, c: torch.Tensor):
        """Conjugate posterior of the means, ``(K, D)`` (``(N, D)`` for the padded model).

        Under ``TraceGraph_ELBO`` the sampled ``c`` carries Pyro's provenance (which sites it
        depends on); the statistics are computed on the plain tensor and the provenance is put
        back on the parameters, so the graph still records that ``"mu"`` depends on ``"c"``.
        """
        provenance = get_provenance(c)
        c = detach_provenance(c)
        num_slots = x.shape[0] if self.model.variant == "padded" else int(c.max()) + 1
        loc, scale = self.model.likelihood.posterior_params(x, c, num_clusters=num_slots)
        return num_slots, track_provenance(loc, provenance), track_provenance(scale, provenance)

    def forward(self, x: torch.Tensor | None = None, num_points: int | None = None, *, observations=None):
        """Sample the latents of the model: ``"c"`` and, unless collapsed, ``"mu"``.

        :param torch.Tensor x: observed points ``(N, D)``.
        :param int num_points: ``N`` (optional; checked against ``x``).
        :param dict observations: ``{"x": points}`` (CSIS, reweighted wake-sleep).
        :returns: ``{"c": labels (N,), "mu": means (K, D)}``; ``"mu"`` is ``(N, D)`` for the
            padded model and absent for the collapsed one.
        :raises ValueError: on batched points ``(P, N, D)`` or when called inside a vectorised
            particle plate (the model draws one partition per trace).
        """
        x = self._points(x, num_points, observations)
        c = pyro.sample("c", self.partition_distribution(x))
        if c.ndim != 1:
            raise ValueError(
                f"the guide's partition has shape {tuple(c.shape)}: GFNCPGuide cannot run inside "
                "a vectorised particle plate (vectorize_particles=True, Predictive(parallel=True)), "
                "because the model draws one partition per trace; use the sequential versions, or "
                "gfncp_pyro.infer.importance for vectorised importance sampling"
            )
        latents = {"c": c}
        if self.model.variant != "collapsed":
            num_slots, loc, scale = self._mean_posterior(x, c)
            with pyro.plate("clusters", num_slots):
                latents["mu"] = pyro.sample("mu", dist.Normal(loc, scale).to_event(1))
        return latents

    @torch.no_grad()
    def median(self, x: torch.Tensor | None = None, num_points: int | None = None, *, observations=None):
        """A point estimate: the greedy partition (most probable step by step, identity order)
        and, unless collapsed, the posterior means of the clusters given it.

        :returns: ``{"c": labels (N,), "mu": means}`` with shapes as in :meth:`forward`.
        """
        x = self._points(x, num_points, observations)
        labels, _ = decoding.greedy(self.network, x.to(next(self.network.parameters())))
        latents = {"c": labels.to(x.device)}
        if self.model.variant != "collapsed":
            latents["mu"] = self._mean_posterior(x, latents["c"])[1]
        return latents
