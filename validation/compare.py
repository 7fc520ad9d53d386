"""Compare an amortized posterior q(c | x) with the exact posterior p(c | x) over all partitions.

For one data set with all Bell(N) partitions enumerated: q of every partition along the identity
order (Eq. 30 without the order factor) and averaged over R random orders (the GFlowNet's
marginal over orders, Eq. 19), the divergences between p and q, MAP agreement, q's mass on the
exact top-10, SDPP (Eq. 32) of the exact MAP partition, MC (Eq. 24) of the true partition, and
self-normalised importance sampling with q as proposal (log evidence, ESS, corrected posterior).
Beyond enumeration (:func:`compare_dp`), against the subset DP: the co-clustering matrix of q,
of q reweighted by importance sampling and of the learned reward, MAP agreement, SDPP and the
importance-sampling evidence.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math

import torch

from gfncp_pyro import decoding, flows, losses, policy
from gfncp_pyro.exact import ExactPosterior
from gfncp_pyro.infer import collapsed_log_joint
from gfncp_pyro.metrics import divergences, entropy, sdpp
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.nn import EnergyNet
from gfncp_pyro.subset_dp import SubsetPosterior
from gfncp_pyro.tabulate import log_normalise, partition_codes, policy_log_q, reward_log_p

__all__ = ["partition_codes", "policy_log_q", "reward_log_p", "divergences", "compare_one", "compare_dp"]

def compare_one(net: EnergyNet, x: torch.Tensor, exact: ExactPosterior, true_labels: torch.Tensor,
                orders: torch.Tensor, num_importance: int = 1000, sdpp_orders: int = 500,
                generator: torch.Generator | None = None) -> dict:
    """All metrics of one model on one data set (see the module docstring).

    :param orders: ``(R, N)`` random orders; q is also evaluated along the identity order.
    :returns: a JSON-ready dict of floats, plus ``"log_q"`` (identity order, float64 ``(P,)``)
        for plotting.
    """
    n = x.shape[0]
    identity = torch.arange(n).unsqueeze(0)
    log_q_all = policy_log_q(net, x, exact.labels, torch.cat([identity, orders]))
    log_q = log_q_all[0]
    log_q_avg = torch.logsumexp(log_q_all[1:], 0) - math.log(orders.shape[0]) if orders.shape[0] else log_q
    log_p = exact.log_posterior
    out = {f"{k}": v for k, v in divergences(log_p, log_q).items()}
    out.update({f"{k}_orders": v for k, v in divergences(log_p, log_normalise(log_q_avg)).items()})
    log_r = reward_log_p(net, x, exact.labels)
    out.update({f"reward_{k}": v for k, v in divergences(log_p, log_r).items()})
    out["entropy_q"] = entropy(log_q)
    out["entropy_reward"] = entropy(log_r)
    out["q_mass_identity"] = float(log_q.exp().sum())
    p_map = int(log_p.argmax())
    out["map_agreement"] = float(int(log_q.argmax()) == p_map)
    top10 = torch.topk(log_p, min(10, log_p.numel())).indices
    out["q_mass_on_top10"] = float(log_q[top10].exp().sum())
    out["p_mass_on_top10"] = float(log_p[top10].exp().sum())
    dtype = next(net.parameters()).dtype
    with torch.no_grad():
        result = sdpp(net, x.to(dtype), exact.labels[p_map], sdpp_orders,
                             generator=int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        out["sdpp_map"] = float(result.value)
        steps = policy.teacher_force(net, x.to(dtype)[None], true_labels[None])
        out["mc_true_paper"] = float(losses.marginal_consistency(steps, "paper"))
        out["mc_true_consistent"] = float(losses.marginal_consistency(steps, "consistent"))
        if net.config.state_head:  # the model's own flows (Eq. 24 with its per-state offsets)
            out["mc_true_state"] = float(losses.marginal_consistency(
                steps, "state", flows.parent_log_flow_offsets(net, steps)))
        if net.config.flow_head:
            offsets = flows.state_log_flow_offsets(net, policy.encode_points(net, x.to(dtype)[None]))
            out["mc_true_offset"] = float(losses.marginal_consistency(steps, "offset", offsets))
    # Self-normalised importance sampling with q (identity order) as the proposal.
    samples, log_q_s = decoding.sample(net, x.to(dtype), num_importance, generator=generator)
    index = torch.searchsorted(partition_codes(exact.labels), partition_codes(samples))
    log_joint = log_p[index] + exact.log_evidence
    log_w = log_joint - log_q_s.double()
    log_ev_hat = torch.logsumexp(log_w, 0) - math.log(num_importance)
    w = torch.softmax(log_w, 0)
    corrected = torch.zeros_like(log_p).index_add_(0, index, w)
    out["is_log_evidence_error"] = float(log_ev_hat - exact.log_evidence)
    out["is_ess"] = float(1.0 / (w.square().sum()))
    out["is_tv"] = float(0.5 * (corrected - log_p.exp()).abs().sum())
    out["log_q"] = log_q
    return out


def compare_dp(net: EnergyNet, x: torch.Tensor, dp: SubsetPosterior, mixture: CRPMixture, num_importance: int,
               sdpp_orders: int, generator: torch.Generator) -> dict:
    """Metrics of one model on one data set against the subset DP (N beyond enumeration):
    co-clustering errors and the importance-sampling evidence (see the module docstring)."""
    dtype = next(net.parameters()).dtype
    n = x.shape[0]
    samples, log_q = decoding.sample(net, x.to(dtype), num_importance, generator=generator)
    log_w = collapsed_log_joint(mixture, x.double(), samples) - log_q.double()
    w = torch.softmax(log_w, 0)
    same = (samples.unsqueeze(-1) == samples.unsqueeze(-2)).double()
    exact_cc = dp.coclustering()
    off = ~torch.eye(n, dtype=torch.bool)
    with torch.no_grad():  # the learned reward by self-normalised IS, q as proposal (gfncp_pyro.reward)
        encodings = policy.encode_points(net, x.to(dtype).unsqueeze(0))
        expanded = policy.Encodings(encodings.h.expand(num_importance, -1, -1),
                                    encodings.u.expand(num_importance, -1, -1))
        log_r = -policy.partition_energy(net, expanded, samples).double()
    w_r = torch.softmax(log_r - log_q.double(), 0)
    greedy, _ = decoding.greedy(net, x.to(dtype))
    map_labels, _ = dp.map_partition()
    with torch.no_grad():
        value = sdpp(net, x.to(dtype), map_labels, sdpp_orders,
                     generator=int(torch.randint(0, 2**31 - 1, (1,), generator=generator))).value
    return {
        "coclustering_mae": float((same.mean(0) - exact_cc)[off].abs().mean()),
        "is_coclustering_mae": float(((w[:, None, None] * same).sum(0) - exact_cc)[off].abs().mean()),
        "reward_coclustering_mae": float(((w_r[:, None, None] * same).sum(0) - exact_cc)[off].abs().mean()),
        "reward_is_ess": float(1.0 / w_r.square().sum()),
        "map_agreement": float(torch.equal(greedy, map_labels)),
        "sdpp_map": float(value),
        "is_log_evidence_error": float(torch.logsumexp(log_w, 0) - math.log(num_importance) - dp.log_evidence),
        "is_ess": float(1.0 / w.square().sum()),
    }
