"""Batched draws behind a guide that Pyro calls one partition at a time.

``pyro.infer.Importance``, ``SVI`` with sequential particles and MCMC-style loops call a guide
once per sample, each time with the same points. Decoding one partition of ``N`` points costs
``N - 1`` sequential network steps whatever the number of partitions decoded with it, so
:class:`DrawCache` keeps, per set of points (at most ``max_sets`` of them):

* the encodings ``(h, u)`` of the points (Eq. 14 in [1]), computed once without autograd;
* a queue of partitions drawn ahead from ``q(c | x)`` in one batched decoding pass
  (:func:`gfncp_pyro.decoding.sample`), with their log-probabilities (and, with random orders,
  their orders). The batch doubles each time the queue of the same set runs empty (1, 2,
  4, ... up to ``max_batch``), so a single call never decodes much more than it uses.

Every draw is an independent draw of ``q(c | x)`` under the current parameters, so handing
them out one per call samples exactly as decoding one per call would. The cache is
invalidated when it could be stale or break reproducibility:

* the points differ (compared by value) or are not plain data (``requires_grad``);
* a network parameter was replaced or changed in place (its version counter moved: optimiser
  steps, ``load_state_dict``); changes made through ``.data`` bypass version counters, so call
  :meth:`clear` after such edits;
* the random stream moved since the end of the previous call (``pyro.set_rng_seed``, or anything
  else drew random numbers in between): the queued draws are dropped, so a seeded run gives the
  same samples whatever ran before it.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch

from . import decoding
from .distributions import AmortizedPartition
from .nn import EnergyNet

__all__ = ["DrawCache"]

MAX_BATCH = 1024
"""Largest number of partitions decoded ahead in one pass."""

MAX_STATE_ELEMENTS = 2**22
"""Bound on ``batch * N * h_dim``, the size of one pass's decoding state."""


class _Entry:
    """One set's encodings and queue of draws."""

    def __init__(self, x: torch.Tensor, encodings):
        self.x = x.detach().clone()
        self.encodings = encodings
        self.batch = 1
        self.drop()

    def drop(self) -> None:
        self.labels = self.log_q = self.orders = None
        self.next = 0

    def empty(self) -> bool:
        return self.labels is None or self.next >= self.labels.shape[0]

    def matches(self, x: torch.Tensor) -> bool:
        return (x.shape == self.x.shape and x.dtype == self.x.dtype and x.device == self.x.device
                and bool(torch.equal(x, self.x)))


class DrawCache:
    """Encodings and draws decoded ahead, for the sets a guide is called with.

    :param EnergyNet network: the guide's network.
    :param bool random_order: each draw along its own uniformly random order.
    :param generator: the guide's :class:`torch.Generator` or ``None`` (torch's global one).
    :param int max_sets: how many distinct sets are kept (least recently used is dropped).
    """

    def __init__(self, network: EnergyNet, random_order: bool, generator: torch.Generator | None,
                 max_sets: int = 4):
        self.network = network
        self.random_order = random_order
        self.generator = generator
        self.max_sets = max_sets
        self.clear()

    def clear(self) -> None:
        """Forget every encoding and queued draw (and re-read the network's parameters)."""
        self._entries: list[_Entry] = []
        # Listing a module's parameters walks its submodules (slow next to one call); the list
        # is read once, and a replaced network is a new DrawCache.
        self._params = list(self.network.parameters())
        self._versions = [p._version for p in self._params]
        self._rng_state = None

    # ------------------------------------------------------------------ validity
    def _source_state(self) -> torch.Tensor:
        return (self.generator or torch.default_generator).get_state()

    def _check_parameters(self) -> None:
        versions = [p._version for p in self._params]
        if versions != self._versions:
            self._entries = []
            self._versions = versions

    def _check_stream(self) -> None:
        if self._rng_state is None or not torch.equal(self._source_state(), self._rng_state):
            for entry in self._entries:
                entry.drop()
                entry.batch = 1

    def end_call(self) -> None:
        """Record the random stream's state at the end of a guide call."""
        self._rng_state = self._source_state()

    # ------------------------------------------------------------------ draws
    def _entry(self, x: torch.Tensor) -> _Entry:
        for i, entry in enumerate(self._entries):
            if entry.matches(x):
                self._entries.append(self._entries.pop(i))  # most recently used last
                return entry
        from .policy import encode_points

        with torch.no_grad():
            encodings = tuple(t[0] for t in encode_points(self.network, x.unsqueeze(0)))
        entry = _Entry(x, encodings)
        self._entries = self._entries[-(self.max_sets - 1):] + [entry] if self.max_sets > 1 else [entry]
        return entry

    def _refill(self, entry: _Entry) -> None:
        n = entry.x.shape[0]
        cap = max(1, min(MAX_BATCH, MAX_STATE_ELEMENTS // (n * self.network.config.h_dim)))
        count = min(entry.batch, cap)
        entry.batch = min(2 * count, cap)
        source = self.generator
        if source is None:  # Pyro's convention: follow torch's global RNG
            source = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        h, u = entry.encodings
        if self.random_order:
            keys = torch.rand((count, n), generator=source, dtype=torch.float64, device=source.device)
            orders = keys.argsort(-1).to(entry.x.device)
            labels, log_q = decoding.sample(
                self.network, entry.x.expand(count, *entry.x.shape), num_samples=1, orders=orders,
                generator=source, encodings=(h.expand(count, *h.shape), u.expand(count, *u.shape)),
            )
            labels, log_q = labels[:, 0], log_q[:, 0]
        else:
            orders = None
            labels, log_q = decoding.sample(self.network, entry.x, num_samples=count, generator=source,
                                            encodings=(h, u))
        entry.labels, entry.log_q, entry.orders, entry.next = labels, log_q, orders, 0

    def distribution(self, x: torch.Tensor) -> AmortizedPartition:
        """``q(c | x)`` whose next ``sample()`` returns a queued draw.

        :param torch.Tensor x: one set ``(N, *point_shape)`` in the network's dtype and device.
        """
        if x.requires_grad:
            return AmortizedPartition(self.network, x, random_order=self.random_order,
                                      generator=self.generator)
        self._check_parameters()
        self._check_stream()
        entry = self._entry(x)
        if entry.empty():
            self._refill(entry)
        i = entry.next
        entry.next += 1
        order = None if entry.orders is None else entry.orders[i]
        q = AmortizedPartition(self.network, x, order, generator=self.generator, encodings=entry.encodings)
        q._params = self._params
        return q._set_next_draw(entry.labels[i], entry.log_q[i])
