"""Clustering metrics of the paper's protocol (Sec. 5 in [1]): NMI, ARI, MC (Eq. 24), SDPP (Eq. 32).

NMI and ARI compare two labellings of one set (scikit-learn's definitions: arithmetic-mean
normalised mutual information, adjusted Rand index). MC is the marginal-consistency loss of the
ground-truth partition; SDPP is :func:`gfncp_pyro.policy.sdpp`.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from . import losses, policy
from .nn import EnergyNet

__all__ = ["nmi", "ari", "batch_nmi_ari", "marginal_consistency_metric", "sdpp"]

sdpp = policy.sdpp


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
