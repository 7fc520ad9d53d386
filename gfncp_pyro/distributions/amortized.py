"""The amortized posterior ``q(c | x)`` of a trained energy network as a Pyro distribution.

A trained :class:`~gfncp_pyro.nn.EnergyNet` defines, for a set ``x`` of ``N`` points and an
order ``rho`` of its points, the sequential policy of Eq. (21) in [1] (NCP's Eq. (10) for an NCP
network). The probability of a partition along ``rho`` is the product of its steps (Eq. (30) in
[1] without the ``1/N!`` factor of the order)::

    q(c | x, rho) = prod_t softmax_k(-E[t, k])[a_t],     a = canonicalize(c[rho]).

:class:`AmortizedPartition` is this distribution over canonical label vectors, one event of
shape ``(N,)``, for a fixed order: the identity, a given permutation, or one drawn uniformly at
random when the distribution is built and kept for its lifetime, so that ``log_prob`` always
scores along the order that ``sample`` used (a GFNCP network is meant to give nearly the same
probabilities along every order; an NCP network does not). Sampling is sequential
(:func:`gfncp_pyro.decoding.sample`) and returns the log-probability of each sample at no extra
cost; ``log_prob`` reuses it for the tensor ``sample`` last returned, and otherwise
teacher-forces all steps of all partitions at once (:func:`gfncp_pyro.policy.teacher_force`).
Gradients reach the network either way: for a reused value the teacher-forcing pass runs only
if a backward pass asks for it (:func:`~gfncp_pyro.distributions.lazy_grad.lazy_log_prob`), so
scoring inside ``pyro.infer.Importance`` with autograd on costs no autograd work.

**Batch shapes.** The distribution keeps its distinct sets once: a distribution expanded to a
batch shape (``expand``, or a Pyro plate such as the vectorised particle plate of
``Trace_ELBO(vectorize_particles=True)`` or ``Predictive(parallel=True)``) decodes all the
partitions it needs from one set in one batched pass, and teacher-forces them against one
encoding of the set.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution

from .. import decoding, policy
from .._checks import explicit_generator
from ..nn import EnergyNet
from ..partitions import check_canonical
from .constraints import canonical_partition
from .lazy_grad import lazy_log_prob
from .provenance import with_provenance_of

__all__ = ["AmortizedPartition"]

MAX_TEACHER_ELEMENTS = 2**24
"""Bound on the ``(rows, N, K + 1, width)`` intermediates of one teacher-forcing pass."""


def _check_order(order, shape: torch.Size, device) -> torch.Tensor:
    """``order`` broadcast to ``shape = batch_shape + (N,)``; each row a permutation of ``0..N-1``."""
    if not isinstance(order, torch.Tensor) or order.is_floating_point() or order.dtype == torch.bool:
        raise ValueError("order must be an integer torch.Tensor holding a permutation of 0..N-1")
    n = shape[-1]
    if order.ndim < 1 or order.shape[-1] != n:
        raise ValueError(f"order must have shape (..., N) with N = {n}, got {tuple(order.shape)}")
    try:
        order = order.to(device=device, dtype=torch.long).expand(shape)
    except RuntimeError:
        raise ValueError(
            f"order of shape {tuple(order.shape)} does not broadcast to the sets' shape "
            f"{tuple(shape)}; give one order (N,) or one per set"
        ) from None
    if not torch.equal(order.sort(-1).values, torch.arange(n, device=device).expand(shape)):
        raise ValueError(
            "order must hold a permutation of 0, ..., N - 1 in each row (every point exactly "
            "once); pass None for the identity"
        )
    return order


class AmortizedPartition(TorchDistribution):
    """``q(c | x)`` of an energy network along one order per set (Eqs. 21 and 30 in [1]).

    :param EnergyNet network: the trained network (GFNCP or NCP).
    :param torch.Tensor x: one set ``(N, *point_shape)`` or sets of equal size
        ``(*batch_shape, N, *point_shape)``, in the dtype and on the device of the network's
        parameters. The batch shape of the distribution is ``x``'s leading shape.
    :param torch.Tensor order: optional permutation ``(N,)`` of the points, or one per set
        ``(*batch_shape, N)``; default: the identity (or a random order, see ``random_order``).
    :param bool random_order: draw one uniformly random order per set now and keep it.
    :param generator: a :class:`torch.Generator` (or an ``int`` seed) for the random order and
        for :meth:`sample`. With ``None`` the randomness comes from torch's global generator,
        like every Pyro distribution, so :func:`pyro.set_rng_seed` makes runs reproducible.
    :param encodings: optional ``(h, u)`` of ``x`` from :func:`gfncp_pyro.policy.encode_points`
        (``(*batch_shape, N, h_dim)`` each), computed without autograd, to skip encoding the
        points again when decoding and scoring without gradients.

    Samples are canonical label vectors ``(N,)`` (``torch.long``) in the caller's point order.
    ``has_rsample`` is False: gradients flow through :meth:`log_prob` only (score function).
    """

    arg_constraints = {}
    support = canonical_partition
    has_rsample = False
    has_enumerate_support = False

    def __init__(
        self,
        network: EnergyNet,
        x: torch.Tensor,
        order: torch.Tensor | None = None,
        *,
        random_order: bool = False,
        generator: torch.Generator | int | None = None,
        encodings: tuple[torch.Tensor, torch.Tensor] | None = None,
        validate_args=None,
    ):
        if not isinstance(network, EnergyNet):
            raise ValueError(f"network must be a gfncp_pyro.nn.EnergyNet, got {type(network).__name__}")
        network.check_points(x, "x")
        point_ndim = len(network.point_shape)
        if x.ndim < point_ndim + 1 or x.shape[x.ndim - point_ndim - 1] == 0:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected (*batch_shape, N, "
                f"{', '.join(map(str, network.point_shape))}) with N >= 1"
            )
        param = next(network.parameters())
        if x.dtype != param.dtype or x.device != param.device:
            raise ValueError(
                f"x is {x.dtype} on {x.device} but the network's parameters are {param.dtype} on "
                f"{param.device}; convert x, e.g. x.to(next(network.parameters()))"
            )
        if order is not None and random_order:
            raise ValueError("give either an order or random_order=True, not both")
        self.network = network
        self.generator = explicit_generator(generator)
        batch_shape = x.shape[: x.ndim - point_ndim - 1]
        n = x.shape[len(batch_shape)]
        rows = batch_shape + (n,)
        if random_order:
            keys = torch.rand(rows, generator=self.generator, dtype=torch.float64,
                              device=None if self.generator is None else self.generator.device)
            order = keys.argsort(-1).to(x.device)
        elif order is None:
            order = torch.arange(n, device=x.device).expand(rows)
        else:
            order = _check_order(order, rows, x.device)
        # Distinct sets (S, N, ...) and orders (S, N); _row maps the batch to them.
        count = batch_shape.numel()
        self._sets = x.reshape((count,) + x.shape[len(batch_shape):])
        self._orders = order.reshape(count, n)
        self._row = torch.arange(count, device=x.device).reshape(batch_shape)
        self._encodings = None if encodings is None else _check_encodings(encodings, x, self._sets.shape[:2])
        self._cache = None
        self._next_draw = None
        self._params = None
        super().__init__(batch_shape, torch.Size((n,)), validate_args=validate_args)

    @property
    def num_points(self) -> int:
        return self.event_shape[0]

    @property
    def x(self) -> torch.Tensor:
        """The points ``(*batch_shape, N, *point_shape)`` (a view when all share one set)."""
        point_shape = self._sets.shape[1:]
        if self._sets.shape[0] == 1:
            return self._sets[0].expand(self.batch_shape + point_shape)
        return self._sets[self._row]

    @property
    def order(self) -> torch.Tensor:
        """The order of each set ``(*batch_shape, N)``: step ``t`` assigns point ``order[t]``."""
        if self._orders.shape[0] == 1:
            return self._orders[0].expand(self.batch_shape + self.event_shape)
        return self._orders[self._row]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(AmortizedPartition, _instance)
        batch_shape = torch.Size(batch_shape)
        new.network = self.network
        new.generator = self.generator
        new._sets, new._orders, new._encodings = self._sets, self._orders, self._encodings
        new._row = self._row.expand(batch_shape)
        new._cache = None
        new._next_draw = None
        new._params = getattr(self, "_params", None)
        super(AmortizedPartition, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _set_next_draw(self, labels: torch.Tensor, log_q: torch.Tensor) -> "AmortizedPartition":
        """Make the next ``sample()`` (one partition, batch shape ``()``) return ``labels``
        ``(N,)``, a draw from this very distribution made earlier, with its ``log_q`` ``()``
        (used by :class:`~gfncp_pyro.guides.GFNCPGuide`, which decodes draws in batches)."""
        self._next_draw = (labels, log_q)
        return self

    def _encoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, u)`` of the distinct sets ``(S, N, h_dim)``, without autograd, computed once."""
        if self._encodings is None:
            with torch.no_grad():
                self._encodings = tuple(policy.encode_points(self.network, self._sets))
        return self._encodings

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draw partitions; their log-probabilities are kept for :meth:`log_prob`.

        All partitions of one set come from one batched decoding pass.

        :param sample_shape: leading sample dimensions.
        :returns: canonical labels ``sample_shape + batch_shape + (N,)``, ``torch.long``.
        """
        sample_shape = torch.Size(sample_shape)
        shape = sample_shape + self.batch_shape
        if self._next_draw is not None and not shape:
            labels, log_q = self._next_draw
            self._next_draw = None
            self._cache = (labels, log_q)
            return labels
        if shape.numel() == 0:
            return torch.empty(shape + self.event_shape, dtype=torch.long, device=self._sets.device)
        generator = self.generator
        if generator is None:  # Pyro's convention: follow torch's global RNG
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        h, u = self._encoded()
        if self._sets.shape[0] == 1:  # one set: every partition from one decoding pass
            labels, log_q = decoding.sample(self.network, self._sets[0], num_samples=shape.numel(),
                                            orders=self._orders[0], generator=generator,
                                            encodings=(h[0], u[0]))
        else:
            rows = self._row.reshape(-1)
            labels, log_q = decoding.sample(
                self.network, self._sets[rows], num_samples=sample_shape.numel(),
                orders=self._orders[rows], generator=generator, encodings=(h[rows], u[rows]),
            )
            labels, log_q = labels.transpose(0, 1), log_q.transpose(0, 1)
        labels = labels.reshape(shape + self.event_shape)
        self._cache = (labels, log_q.reshape(shape))
        return labels

    def _parameters(self) -> list[torch.Tensor]:
        if getattr(self, "_params", None) is None:
            self._params = list(self.network.parameters())
        return self._params

    def _needs_grad(self) -> bool:
        return torch.is_grad_enabled() and (
            self._sets.requires_grad or any(p.requires_grad for p in self._parameters()))

    def _check_value(self, value) -> torch.Tensor:
        n = self.num_points
        if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[-1] != n:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"value must be canonical labels (..., {n}), got {got}")
        if value.is_floating_point():
            if not bool(canonical_partition.check(value).all()):
                raise ValueError(
                    "value must hold integer labels in canonical form; use "
                    "gfncp_pyro.partitions.canonicalize() first"
                )
            value = value.long()
        check_canonical(value, name="value (partition labels)")
        try:
            torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast with the batch shape "
                f"{tuple(self.batch_shape)}"
            ) from None
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(c | x, rho)`` along the stored order (Eq. (30) in [1] without ``1/N!``).

        Exact (a normalised distribution over the Bell(N) partitions). For the tensor that
        :meth:`sample` last returned the log-probability of the sampling pass is returned (the
        same value up to rounding), differentiable but teacher-forced only if a backward pass
        reaches it; otherwise all steps of all partitions are teacher-forced, in chunks of
        bounded memory, with autograd when the network's parameters need gradients.

        :param torch.Tensor value: canonical labels ``(..., N)``; ``...`` broadcasts with the
            batch shape.
        :returns: ``broadcast(..., batch_shape)``, in the network's dtype.
        :raises ValueError: if ``value`` has the wrong size or is not canonical.
        """
        return with_provenance_of(value, self._log_prob)

    def _log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._cache is not None and value is self._cache[0]:
            if not torch.is_grad_enabled():
                return self._cache[1]
            return lazy_log_prob(self._cache[1], lambda: self._teacher_forced(value, None),
                                 [self._sets, *self._parameters()])
        value = self._check_value(value)
        if self._needs_grad():
            return self._teacher_forced(value, None)
        with torch.no_grad():
            return self._teacher_forced(value, self._encoded())

    def _teacher_forced(self, value: torch.Tensor, encodings) -> torch.Tensor:
        """Teacher-forced ``log q`` of canonical ``value`` ``(..., N)``; ``encodings=None``
        encodes the sets here (with autograd when it is on)."""
        n = self.num_points
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        h, u = policy.encode_points(self.network, self._sets) if encodings is None else encodings
        set_of_row = self._row.expand(shape).reshape(-1)
        labels = value.to(h.device).expand(shape + (n,)).reshape(-1, n)
        width = int(labels.max()) + 2 if labels.numel() else 1
        per_row = n * width * max(self.network.config.h_dim, self.network.config.hidden)
        chunk = max(1, MAX_TEACHER_ELEMENTS // per_row)
        out = []
        for start in range(0, labels.shape[0], chunk):
            rows = set_of_row[start : start + chunk]
            steps = policy.teacher_force(
                self.network, policy.Encodings(h[rows], u[rows]), labels[start : start + chunk], None,
                self._orders[rows],
            )
            out.append(policy.trajectory_log_prob(steps))
        log_q = torch.cat(out) if out else h.new_zeros(0)
        return log_q.reshape(shape)

    def __repr__(self) -> str:
        return (
            f"AmortizedPartition(batch_shape: {tuple(self.batch_shape)}, "
            f"num_points: {self.num_points})"
        )


def _check_encodings(encodings, x: torch.Tensor, rows: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, u)`` of ``x`` reshaped to the distinct sets ``(S, N, h_dim)``."""
    if not isinstance(encodings, (tuple, list)) or len(encodings) != 2:
        raise ValueError("encodings must be a pair (h, u) from gfncp_pyro.policy.encode_points")
    h, u = encodings
    if not all(isinstance(t, torch.Tensor) for t in (h, u)) or h.shape != u.shape or \
            h.ndim < 2 or tuple(h.shape[:-1]) != tuple(x.shape[: h.ndim - 1]):
        raise ValueError(
            f"encodings must be (h, u) of shape (*batch_shape, N, h_dim) matching x of shape "
            f"{tuple(x.shape)}; got {tuple(getattr(h, 'shape', ()))} and {tuple(getattr(u, 'shape', ()))}"
        )
    return h.reshape(rows + h.shape[-1:]), u.reshape(rows + u.shape[-1:])
