"""Every metric of the package in one place: the paper's protocol (Sec. 5 in [1]: NMI, ARI, MC of
Eq. 24, SDPP of Eq. 32) and the distances to the exact posterior (TV, KL, Jensen-Shannon,
entropy, the co-clustering matrix and its error).

NMI and ARI compare two labellings of one set (scikit-learn's definitions: arithmetic-mean
normalised mutual information, adjusted Rand index). MC is the marginal-consistency loss of the
ground-truth partition. :func:`divergences` and :func:`entropy` take log-probabilities on one
support (e.g. all partitions of a small set); :func:`total_variation` takes two tables of
partitions with their log-probabilities (different supports are merged);
:func:`co_clustering` is ``P(c_i = c_j)`` under weighted samples and :func:`co_clustering_mae`
the mean absolute error of its off-diagonal entries against a reference matrix (the measure
beyond enumeration, N >= 13, where the subset DP gives the exact matrix).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from . import losses, policy
from ._checks import check_positive_int, make_generator
from .nn import EnergyNet
from .policy import log_prob_orders

if TYPE_CHECKING:
    from .infer import PartitionTable

__all__ = ["nmi", "ari", "batch_nmi_ari", "marginal_consistency_metric", "SDPPResult", "sdpp", "sdpp_of_log_probs", "divergences",
           "entropy", "total_variation", "co_clustering", "co_clustering_mae"]

_CO_CLUSTERING_ELEMENTS = 2**24
"""Bound on the ``(chunk, N, K)`` one-hot block of :func:`co_clustering`."""


def _pair(truth, pred) -> tuple[list[int], list[int]]:
    truth, pred = torch.as_tensor(truth).tolist(), torch.as_tensor(pred).tolist()
    if len(truth) != len(pred) or not truth:
        raise ValueError(f"labellings must be non-empty and of equal length, got {len(truth)} and {len(pred)}")
    return truth, pred


def nmi(truth, pred) -> float:
    """Normalised mutual information between two labellings ``(N,)``."""
    return float(normalized_mutual_info_score(*_pair(truth, pred)))


def ari(truth, pred) -> float:
    """Adjusted Rand index between two labellings ``(N,)``."""
    return float(adjusted_rand_score(*_pair(truth, pred)))


def batch_nmi_ari(truth: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """NMI and ARI of every set of a padded batch ``(B, N_max)``."""
    lengths = mask.sum(1).tolist()
    out_nmi, out_ari = [], []
    for t, p, n in zip(truth.tolist(), pred.tolist(), lengths):
        out_nmi.append(nmi(t[:n], p[:n]))
        out_ari.append(ari(t[:n], p[:n]))
    return out_nmi, out_ari


def marginal_consistency_metric(net: EnergyNet, x: torch.Tensor, labels: torch.Tensor, mask=None, orders=None,
                                flow: str = "paper") -> torch.Tensor:
    """The MC metric of Sec. 5.2 in [1]: Eq. (24) of the given partitions, per set ``(B,)``.

    ``flow="paper"`` uses the paper's min-shifted energies (comparable with its tables);
    ``"consistent"`` the unshifted log-flows.
    """
    with torch.no_grad():
        steps = policy.teacher_force(net, x, labels, mask, orders)
        return losses.marginal_consistency(steps, flow)


class SDPPResult(NamedTuple):
    """Eq. (32) in [1] and what it was computed from.

    :ivar value: scalar, std / mean of ``p(c_rho | x_rho)`` over the orders.
    :ivar log_probs: ``(R,)`` log-probabilities of the partition along each order.
    :ivar orders: ``(R, N)`` the orders.
    """

    value: torch.Tensor
    log_probs: torch.Tensor
    orders: torch.Tensor


def sdpp(
    net: EnergyNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    num_orders: int = 500,
    generator: torch.Generator | int | None = None,
    *,
    chunk_size: int | None = None,
    bf16: bool = False,
) -> SDPPResult:
    """SDPP (Eq. 32 in [1]): std / mean of ``p(c_rho | x_rho)`` over random orders ``rho``.

    Computed in log space, so it does not underflow for large ``N``: with ``w = exp(l - max l)``,
    SDPP ``= std(w) / mean(w)`` (population std, ``ddof = 0``).

    :param torch.Tensor x: one set ``(N, *point_shape)``.
    :param torch.Tensor labels: ``(N,)`` canonical labels (the ground truth in [1]).
    :param int num_orders: number of uniformly random orders (500 in [1]).
    :param generator: a ``torch.Generator``, an integer seed (a CPU generator) or ``None``
        (torch's global RNG: ``pyro.set_rng_seed`` controls it).
    :returns: :class:`SDPPResult`.
    """
    num_orders = check_positive_int(num_orders, "num_orders")
    generator = make_generator(generator)
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be one set (N, *point_shape)")
    keys = torch.rand((num_orders, x.shape[0]), generator=generator, device=generator.device)
    orders = keys.argsort(1).to(x.device)
    log_probs = log_prob_orders(net, x, labels, orders, chunk_size=chunk_size, bf16=bf16)
    return SDPPResult(sdpp_of_log_probs(log_probs), log_probs, orders)


def sdpp_of_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """SDPP (Eq. 32 in [1]) from ``log p(c_rho | x_rho)`` over orders ``(R,)``: ``std(w) /
    mean(w)`` with ``w = exp(l - max l)`` (population std; no underflow)."""
    weights = torch.exp(log_probs - log_probs.max())
    return weights.std(correction=0) / weights.mean()


def divergences(log_p: torch.Tensor, log_q: torch.Tensor) -> dict[str, float]:
    """TV, KL(p||q), KL(q||p), Jensen-Shannon (nats) between two distributions on the same support."""
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)

    def kl(a, log_a, log_b) -> float:  # sum a log(a/b), with 0 log 0 = 0
        return float(torch.where(a > 0, a * (log_a - log_b), 0.0).sum())

    return {
        "tv": float(0.5 * (p - q).abs().sum()),
        "kl_pq": kl(p, log_p, log_q),
        "kl_qp": kl(q, log_q, log_p),
        "js": 0.5 * kl(p, log_p, log_m) + 0.5 * kl(q, log_q, log_m),
    }


def entropy(log_p: torch.Tensor) -> float:
    """Entropy in nats of a distribution given as logs (``0 log 0 = 0``)."""
    p = log_p.exp()
    return float(-torch.where(p > 0, p * log_p, 0.0).sum())


def total_variation(p: PartitionTable, q: PartitionTable) -> float:
    """``sum_c |p(c) - q(c)| / 2`` between two distributions over partitions of ``N`` points.

    :param p: a :class:`PartitionTable` (or anything with ``labels (U, N)`` and ``log_probs``,
        e.g. :class:`~gfncp_pyro.exact.ExactPosterior` as ``PartitionTable(e.labels,
        e.log_posterior)``).
    :param q: the same for the other distribution.
    """
    if p.labels.shape[-1] != q.labels.shape[-1]:
        raise ValueError(
            f"partitions of {p.labels.shape[-1]} and {q.labels.shape[-1]} points cannot be compared"
        )
    both = torch.cat([p.labels.long(), q.labels.long().to(p.labels.device)])
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    size = int(inverse.max()) + 1
    dtype = torch.promote_types(p.log_probs.dtype, q.log_probs.dtype)
    first = torch.zeros(size, dtype=dtype, device=both.device)
    first = first.index_add(0, inverse[: p.labels.shape[0]], p.log_probs.to(dtype).exp())
    second = torch.zeros_like(first).index_add(
        0, inverse[p.labels.shape[0]:], q.log_probs.to(dtype=dtype, device=both.device).exp()
    )
    return float(0.5 * (first - second).abs().sum())


def co_clustering(labels: torch.Tensor, log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Posterior co-clustering matrix: ``P(c_i = c_j)`` under the weighted samples.

    ``M = sum_s wbar_s A_s A_s^T`` with ``A_s`` the one-hot ``(N, K)`` assignment matrix of
    sample ``s``; computed in chunks of samples with bounded memory, no loop over points.

    :param torch.Tensor labels: canonical labels ``(S, N)``.
    :param torch.Tensor log_weights: unnormalised ``(S,)`` (default: equal weights).
    :returns: symmetric ``(N, N)`` with ones on the diagonal, in the weights' dtype (default
        dtype without weights).
    """
    labels = _check_labels(labels)
    weights = torch.exp(_normalised_log_weights(labels, log_weights))
    samples, n = labels.shape
    width = int(labels.max()) + 1
    chunk = max(1, _CO_CLUSTERING_ELEMENTS // (n * width))
    total = torch.zeros(n, n, dtype=weights.dtype, device=labels.device)
    for start in range(0, samples, chunk):
        onehot = torch.nn.functional.one_hot(labels[start : start + chunk], width).to(weights.dtype)
        weighted = onehot * weights[start : start + chunk, None, None]
        total = total + torch.einsum("snk,smk->nm", weighted, onehot)
    return total


def co_clustering_mae(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean absolute error of the off-diagonal entries of a co-clustering matrix ``(N, N)``
    against a reference (e.g. the exact one of :class:`~gfncp_pyro.subset_dp.SubsetPosterior`);
    0 for ``N = 1``."""
    if estimate.shape != reference.shape or estimate.ndim != 2 or estimate.shape[0] != estimate.shape[1]:
        raise ValueError(f"co-clustering matrices must be square and of equal shape, got {tuple(estimate.shape)} "
                         f"and {tuple(reference.shape)}")
    n = estimate.shape[0]
    if n < 2:
        return 0.0
    off = ~torch.eye(n, dtype=torch.bool, device=estimate.device)
    return float((estimate - reference.to(estimate))[off].abs().mean())


def _check_labels(labels) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.ndim != 2:
        got = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
               else type(labels).__name__)
        raise ValueError(f"labels must be an integer tensor (S, N) of canonical labels, got {got}")
    if labels.shape[0] == 0 or labels.shape[1] == 0:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; need S >= 1 samples of N >= 1 points")
    return labels.long()


def _normalised_log_weights(labels: torch.Tensor, log_weights) -> torch.Tensor:
    if log_weights is None:
        return torch.full(labels.shape[:1], -math.log(labels.shape[0]), dtype=torch.get_default_dtype(),
                          device=labels.device)
    if not isinstance(log_weights, torch.Tensor) or log_weights.shape != labels.shape[:1]:
        raise ValueError(f"log_weights must be a tensor of shape ({labels.shape[0]},), one per sample")
    if bool(torch.isnan(log_weights).any()) or not bool((log_weights < math.inf).all()):
        raise ValueError("log_weights must not contain NaN or +inf")
    if not bool(torch.isfinite(log_weights).any()):
        raise ValueError("every log weight is -inf: no sample has positive weight")
    return log_weights - torch.logsumexp(log_weights, 0)
