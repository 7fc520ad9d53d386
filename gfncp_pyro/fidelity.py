"""A fixed panel of small sets with exact posteriors, to watch a model's fidelity while it trains.

The panel draws ``num_sets`` sets of ``n`` points from the CRP mixture (Eq. 1 in [1]) with its
own seed (:data:`PANEL_SEED`, distinct from the seeds of ``python -m validation.exact``),
enumerates every partition once, and then scores any network against the exact posterior:
q along the identity order (Eq. 30), q averaged over random orders, and the learned reward
normalised over all partitions (Eq. 25). The numbers are those of ``validation.exact`` on the
same sets (tested).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
import statistics

import torch

from .exact import exact_posterior
from .models import CRPMixture
from .nn import EnergyNet
from .metrics import divergences, entropy, sdpp_of_log_probs
from .tabulate import log_normalise, policy_log_q, reward_log_p

__all__ = ["PANEL_SEED", "FidelityPanel"]

PANEL_SEED = 918_273_645
"""Seed of the panel's sets (the validation report's default seed is 0)."""


class FidelityPanel:
    """Fixed seeded sets with their exact posteriors; :meth:`evaluate` scores a network.

    :param CRPMixture mixture: the model the network is trained for (``sample_batch`` draws the
        sets, its likelihood gives the exact posteriors).
    :param int num_sets: number of sets (20 by default).
    :param int n: points per set (enumeration: ``2 <= n <= 10`` keeps it fast).
    :param int num_orders: random orders for q averaged over orders (0: skip).
    :param int seed: the sets' seed (default :data:`PANEL_SEED`).
    """

    def __init__(self, mixture: CRPMixture, num_sets: int = 20, n: int = 8, num_orders: int = 4,
                 seed: int = PANEL_SEED):
        if not isinstance(num_sets, int) or num_sets < 1:
            raise ValueError(f"num_sets must be a positive integer, got {num_sets!r}")
        if not isinstance(n, int) or not 2 <= n <= 10:
            raise ValueError(f"n must be an integer in [2, 10], got {n!r}")
        generator = torch.Generator().manual_seed(seed)
        batch = mixture.sample_batch(torch.full((num_sets,), n), generator, dtype=torch.float64)
        self.x = batch.x
        self.exact = [exact_posterior(x, mixture.alpha, likelihood=mixture.likelihood) for x in self.x]
        self.orders = torch.stack([torch.stack([torch.randperm(n, generator=generator) for _ in range(num_orders)])
                                   if num_orders else torch.zeros((0, n), dtype=torch.long) for _ in self.x])

    def evaluate(self, net: EnergyNet) -> dict[str, float]:
        """Means over the panel: ``tv`` (q along the identity order), ``tv_orders`` (q averaged
        over the random orders), ``reward_tv`` (the normalised reward), ``kl_qp``,
        ``entropy_q`` and ``entropy_p`` (nats), and ``sdpp``: SDPP of the exact MAP partition
        (Eq. 32, std / mean of its ``q`` over the panel's random orders; with few orders a
        coarse version of ``validation.exact``'s 500-order figure)."""
        rows = []
        was_training = net.training
        net.eval()
        try:
            for x, exact, orders in zip(self.x, self.exact, self.orders):
                log_p = exact.log_posterior
                identity = torch.arange(x.shape[0]).unsqueeze(0)
                log_q_all = policy_log_q(net, x, exact.labels, torch.cat([identity, orders]))
                log_q = log_q_all[0]
                along = divergences(log_p, log_q)
                row = {"tv": along["tv"], "kl_qp": along["kl_qp"], "entropy_q": entropy(log_q),
                       "entropy_p": entropy(log_p),
                       "reward_tv": divergences(log_p, reward_log_p(net, x, exact.labels))["tv"]}
                if orders.shape[0]:
                    log_avg = torch.logsumexp(log_q_all[1:], 0) - math.log(orders.shape[0])
                    row["tv_orders"] = divergences(log_p, log_normalise(log_avg))["tv"]
                    row["sdpp"] = float(sdpp_of_log_probs(log_q_all[1:, log_p.argmax()]))
                rows.append(row)
        finally:
            net.train(was_training)
        return {key: statistics.fmean(r[key] for r in rows) for key in rows[0]}
