"""The learned reward as a posterior: ``p_theta(c | x) = exp(-E[c_{1:N}]) / Z`` (Eq. 25 in [1]).

GFNCP's energy of a full partition, ``E[c_{1:N}] = f(sum_k g(H_k), 0)``, sums over clusters
and over the points inside each cluster (Eqs. 12-13), so the reward's posterior is
**order-invariant by construction**, whatever the training achieved; the sequential policy
``q(c | x, rho)`` equals it for every order only where the marginal-consistency loss is zero
(Sec. 4.2). :func:`reward_posterior` normalises it exactly by enumerating every partition for
small sets, and beyond that by self-normalised importance sampling with the policy as the
proposal (weights ``exp(-E[c]) / q(c | x)``).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from . import decoding, policy
from ._checks import check_points, check_positive_int
from .infer import posterior_table
from .nn import EnergyNet
from .partitions import MAX_ENUMERATION_N, enumerate_partitions
from .tabulate import reward_log_p

__all__ = ["RewardPosterior", "reward_posterior"]


class RewardPosterior(NamedTuple):
    """The learned reward normalised over partitions (usable as a
    :class:`~gfncp_pyro.infer.PartitionTable`: ``labels`` and ``log_probs``).

    :ivar labels: canonical labels ``(U, N)``, distinct rows, most probable first.
    :ivar log_probs: normalised log-probabilities ``(U,)``, float64.
    :ivar method: ``"enumeration"`` (exact) or ``"importance"``.
    :ivar ess: effective sample size of the importance weights (``nan`` for enumeration).
    """

    labels: torch.Tensor
    log_probs: torch.Tensor
    method: Literal["enumeration", "importance"]
    ess: float


def reward_posterior(
    net: EnergyNet,
    x: torch.Tensor,
    *,
    max_enumeration: int = MAX_ENUMERATION_N,
    num_samples: int = 1000,
    generator: torch.Generator | int | None = None,
) -> RewardPosterior:
    """The reward's posterior ``exp(-E[c]) / Z`` over partitions of one set ``x``.

    :param EnergyNet net: a trained network (GFNCP's reward; for NCP it is its terminal energy).
    :param torch.Tensor x: one set ``(N, *point_shape)``.
    :param int max_enumeration: enumerate every partition when ``N <= max_enumeration`` (at
        most 12: Bell(12) = 4.2 million partitions, some seconds); beyond, importance sampling.
    :param int num_samples: policy samples for importance sampling.
    :param generator: for the policy samples (a ``torch.Generator`` or an ``int`` seed).
    :raises ValueError: on a bad set or ``max_enumeration > 12``.
    """
    batch, batched = check_points(net, x, single_set=True)
    if batched:
        raise ValueError(f"x must be one set (N, *point_shape), got a batch of shape {tuple(x.shape)}")
    x = batch[0]
    n = x.shape[0]
    max_enumeration = check_positive_int(max_enumeration, "max_enumeration")
    if max_enumeration > MAX_ENUMERATION_N:
        raise ValueError(f"max_enumeration must be at most {MAX_ENUMERATION_N}, got {max_enumeration}")
    if n <= max_enumeration:
        labels = enumerate_partitions(n).to(x.device)
        log_p = reward_log_p(net, x, labels.cpu()).to(x.device)
        order = torch.argsort(log_p, descending=True)
        return RewardPosterior(labels[order], log_p[order], "enumeration", float("nan"))
    num_samples = check_positive_int(num_samples, "num_samples")
    with torch.no_grad():
        samples, log_q = decoding.sample(net, x, num_samples, generator=generator)
        encodings = policy.encode_points(net, x.unsqueeze(0))
        expanded = policy.Encodings(encodings.h.expand(num_samples, -1, -1), encodings.u.expand(num_samples, -1, -1))
        energy = policy.partition_energy(net, expanded, samples)
    log_w = (-energy.double() - log_q.double())
    weights = torch.softmax(log_w, 0)
    table = posterior_table(samples, log_w)
    return RewardPosterior(table.labels, table.log_probs, "importance", float(1.0 / weights.square().sum()))
