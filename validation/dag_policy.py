"""A model's policy and flows on the DAG of Fig. 2 in [1] (built by :mod:`validation.dag`).

On the DAG of a data set of ``N <= MAX_POLICY_N`` points, each edge gets its probability under
the model's policy (Eq. 21 in [1]; ``1/N!`` out of ``s0``), each state its log-flow (Eq. 20)
and each partial state its flow-matching residual (the term squared by Eq. 24, from
:func:`gfncp_pyro.losses.marginal_consistency_residuals`). The annotation is verified: the
outgoing probabilities of every state sum to 1, the product along each trajectory equals
:func:`gfncp_pyro.policy.log_prob_orders` along that order, and the trajectory probabilities
sum to 1; per terminal state it reports the spread of ``q(c | x, rho)`` over the orders (zero
for an order-consistent model).

States are found by the attributes that :func:`validation.dag.build_dag` documents (``order``
and ``labels`` of partial states, ``partition`` of terminal states), not by their names.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import networkx as nx
import torch

from gfncp_pyro.flows import state_log_flow_offsets
from gfncp_pyro.losses import marginal_consistency_residuals
from gfncp_pyro.nn import EnergyNet
from gfncp_pyro.partitions import enumerate_partitions
from gfncp_pyro.policy import (
    Encodings,
    StepEnergies,
    encode_points,
    log_prob_orders,
    step_log_probs,
    taken_energies,
    teacher_force,
)

__all__ = [
    "MAX_POLICY_N",
    "flow_residuals",
    "all_trajectories",
    "annotate_dag",
    "check_policy_dag",
    "policy_dag",
]

MAX_POLICY_N = 4
"""Largest set whose ``N! * Bell(N)`` trajectories are annotated (N = 4: 360)."""


def flow_residuals(
    step_energies: StepEnergies, flow: Literal["consistent", "paper", "offset"] = "consistent",
    offsets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-flows of the states along each trajectory and their flow-matching residuals.

    The state after step ``t`` (0-based) is ``s = (rho, c_{1:t+1})``. Its log-flow is
    ``log F(s) = -Ehat[t, a_t]`` (Eq. 20 in [1]; ``flow="consistent"``: ``-E[t, a_t]``, the
    parametrisations of :func:`~gfncp_pyro.losses.marginal_consistency`). A non-terminal state
    has a single parent, so flow matching (Eq. 23 in [1]) compares its flow with the summed
    flows of its children, and its residual is the term that Eq. (24) in [1] squares at the
    next step, ``marginal_consistency_residuals(step_energies, flow)[:, t + 1]``:

    .. math::

        r(s) = \\log \\sum_{k} F(s \\to (c_{1:t+1}, k)) - \\log F(s)
             = Ehat[t, a_t] + \\operatorname{logsumexp}_k(-Ehat[t + 1, k]),

    so ``sum_t r^2`` is ``marginal_consistency(step_energies, flow)`` and ``r > 0`` means
    the children carry more flow than the state.

    The paper's ``Ehat`` shifts each step's energies by a constant, ``Ehat[t] = E[t] - m_t``,
    with ``m_{N-1} = 0`` (both flows give a terminal state the reward, Eq. 22 in [1], also for
    ``N = 1``, where the paper's ``Ehat[c_1] = 0`` would clash with it). A step's
    residuals under the two flows then differ by ``m_{t+1} - m_t``, and the differences
    after step ``t`` telescope to ``-m_t``: ``log F(s) = -E[t, a_t] - sum_{t' > t}
    (r_paper[t'] - r_consistent[t'])``, residuals as indexed by
    :func:`~gfncp_pyro.losses.marginal_consistency_residuals`.

    :param StepEnergies step_energies: from :func:`~gfncp_pyro.policy.teacher_force`, every
        step.
    :param flow: ``"consistent"``, ``"paper"`` or ``"offset"`` (then ``log F(s) = -E[t, a_t] +
        b_t`` with ``offsets`` ``(B, N_max)`` from
        :func:`~gfncp_pyro.flows.state_log_flow_offsets`).
    :returns: ``log_flows (B, N_max)`` (0 at padding) and ``residuals (B, N_max)`` (0 at the
        terminal step ``t = N_b - 1`` and at padding).
    :raises ValueError: on an unknown ``flow`` or step energies of a step subset.
    """
    if step_energies.step_subset is not None:
        raise ValueError(
            "flow_residuals needs the energies of every step, but these StepEnergies were "
            "computed on a step subset (teacher_force(..., step_subset=...)); call "
            "teacher_force without step_subset"
        )
    by_step = marginal_consistency_residuals(step_energies, flow, offsets)  # [:, t]: parent t - 1
    log_flows = -taken_energies(step_energies)
    if flow == "offset":
        log_flows = log_flows + offsets
    elif flow != "consistent":
        shift = by_step - marginal_consistency_residuals(step_energies, "consistent")
        after = shift.flip(1).cumsum(1).flip(1)[:, 1:]  # [:, t]: sum over t' > t
        log_flows = log_flows - torch.cat([after, torch.zeros_like(shift[:, :1])], 1)
    log_flows = torch.where(step_energies.step_mask, log_flows, 0.0)
    return log_flows, torch.cat([by_step[:, 1:], torch.zeros_like(by_step[:, :1])], 1)


def all_trajectories(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (order, partition) pair of ``n`` points: the ``N! * Bell(N)`` trajectories.

    :returns: ``orders (T, N)`` and canonical ``labels (T, N)``, partition-major: rows
        ``p * N! .. (p + 1) * N! - 1`` hold partition ``p`` of
        :func:`~gfncp_pyro.partitions.enumerate_partitions` along every order.
    """
    orders = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)
    partitions = enumerate_partitions(n)
    return orders.repeat(partitions.shape[0], 1), partitions.repeat_interleave(orders.shape[0], 0)


def annotate_dag(
    dag: nx.DiGraph,
    orders: torch.Tensor,
    labels: torch.Tensor,
    step_energies: StepEnergies,
    flow: Literal["consistent", "paper", "offset"],
    offsets: torch.Tensor | None = None,
) -> float:
    """Put a policy's probabilities on the edges and its flows on the states of the DAG.

    Edge attributes ``prob`` and ``log_prob``: ``1 / N!`` out of ``s0``, else the policy
    ``P(a_n = k | a_{<n}) = softmax_k(-E[n, k])`` (Eq. 21 in [1]). Node attributes
    (:func:`flow_residuals`): ``log_flow`` and ``residual`` on partial states, ``log_flow`` on
    terminal states (``-E[c_{1:N}]`` for both flows); ``s0`` gets neither (its flow is not
    parametrised). Every state lies on several trajectories; the first one sets its
    attributes and the others are compared with it.

    :param nx.DiGraph dag: from :func:`validation.dag.build_dag` with ``N`` points.
    :param torch.Tensor orders: ``(T, N)`` orders of the trajectories, covering every state.
    :param torch.Tensor labels: ``(T, N)`` canonical partitions in the points' order.
    :param StepEnergies step_energies: energies along these ``T`` trajectories.
    :returns: the largest difference between two trajectories' log-probabilities of the same
        edge (0 for a policy that depends on the state only).
    """
    n = orders.shape[1]
    partial = {(d["order"], d["labels"]): v for v, d in dag.nodes(data=True) if d["kind"] == "partial"}
    terminal = {d["partition"]: v for v, d in dag.nodes(data=True) if d["kind"] == "terminal"}
    log_flows, residuals = (v.tolist() for v in flow_residuals(step_energies, flow, offsets))
    log_probs = step_log_probs(step_energies).tolist()
    actions = step_energies.actions.tolist()
    for _, _, edge in dag.out_edges("s0", data=True):
        edge["log_prob"] = -math.lgamma(n + 1)
        edge["prob"] = math.exp(edge["log_prob"])
    disagreement = 0.0
    for b, order in enumerate(orders.tolist()):
        for depth in range(1, n):
            node = partial[tuple(order), tuple(actions[b][:depth])]
            data = dag.nodes[node]
            seen = "residual" in data
            if not seen:
                data["log_flow"], data["residual"] = log_flows[b][depth - 1], residuals[b][depth - 1]
            for _, _, edge in dag.out_edges(node, data=True):
                log_p = log_probs[b][depth][int(edge["action"])]
                if seen:
                    disagreement = max(disagreement, abs(log_p - edge["log_prob"]))
                else:
                    edge["log_prob"], edge["prob"] = log_p, math.exp(log_p)
        dag.nodes[terminal[tuple(labels[b].tolist())]].setdefault("log_flow", log_flows[b][n - 1])
    return disagreement


def check_policy_dag(
    dag: nx.DiGraph, orders: torch.Tensor, labels: torch.Tensor, reference_log_probs: torch.Tensor,
    atol: float,
) -> dict:
    """Verify an annotated DAG against the policy; raise ``AssertionError`` on a violation.

    Checks (i) the outgoing probabilities of every non-terminal state sum to 1; (ii) along each
    trajectory the product of the edge probabilities after ``s0`` equals
    ``exp(reference_log_probs)`` (``q(c | x, rho)``, Eq. 30 in [1] without ``1/N!``); (iii) the
    probabilities of all trajectories (``1/N!`` included) sum to 1. Each within ``atol``. Adds
    ``q_mean`` (``q`` averaged over the orders: the probability of sampling the terminal state)
    and ``q_max_dev`` (largest ``|q_rho - q_mean|``) to the terminal states.

    :param torch.Tensor reference_log_probs: ``(T,)`` log-probabilities of the trajectories
        ``(orders, labels)``, computed independently (e.g. :func:`gfncp_pyro.policy.log_prob`).
    :returns: the errors of (i)-(iii), residual statistics and ``terminals``:
        ``{name: (q_mean, q_max_dev)}``.
    """
    worst_sum = 0.0
    for node, data in dag.nodes(data=True):
        if data["kind"] != "terminal":
            total = sum(e["prob"] for _, _, e in dag.out_edges(node, data=True))
            if abs(total - 1.0) > atol:
                raise AssertionError(f"outgoing probabilities of state {node} sum to {total!r}, not 1")
            worst_sum = max(worst_sum, abs(total - 1.0))
    index = {(tuple(o), tuple(c)): b for b, (o, c) in enumerate(zip(orders.tolist(), labels.tolist()))}
    reference = reference_log_probs.tolist()
    worst_trajectory, total_probability, terminals = 0.0, 0.0, {}
    for z, data in dag.nodes(data=True):
        if data["kind"] != "terminal":
            continue
        q = []
        for parent in dag.predecessors(z):
            prob, node, child = 1.0, parent, z
            while node != "s0":  # the edges after s0, walked backwards
                prob *= dag.edges[node, child]["prob"]
                (above,) = dag.predecessors(node)
                node, child = above, node
            order = dag.nodes[child].get("order", (0,))  # child: the state after s0 (N = 1: z)
            expected = math.exp(reference[index[(order, data["partition"])]])
            if abs(prob - expected) > atol:
                raise AssertionError(
                    f"trajectory {parent} -> {z}: product of edge probabilities {prob!r}, "
                    f"exp(log_prob) {expected!r}"
                )
            worst_trajectory = max(worst_trajectory, abs(prob - expected))
            q.append(prob)
        q_mean = math.fsum(q) / len(q)
        data["q_mean"], data["q_max_dev"] = q_mean, max(abs(v - q_mean) for v in q)
        terminals[z] = (data["q_mean"], data["q_max_dev"])
        total_probability += q_mean
    if abs(total_probability - 1.0) > atol:
        raise AssertionError(f"trajectory probabilities sum to {total_probability!r}, not 1")
    residuals = [abs(d["residual"]) for _, d in dag.nodes(data=True) if "residual" in d]
    return {
        "prob_sum_error": worst_sum,
        "trajectory_error": worst_trajectory,
        "total_probability": total_probability,
        "max_abs_residual": max(residuals, default=0.0),
        "mean_abs_residual": math.fsum(residuals) / max(len(residuals), 1),
        "states_with_residual": len(residuals),
        "terminals": terminals,
    }


def policy_dag(
    dag: nx.DiGraph, net: EnergyNet, x: torch.Tensor, flow: Literal["consistent", "paper", "offset"],
    atol: float | None = None,
) -> dict:
    """Annotate the DAG of ``x``'s points with ``net``'s policy and flows, and verify it.

    Energies come from one teacher-forced pass over all ``N! * Bell(N)`` trajectories; the
    reference ``q(c | x, rho)`` of :func:`check_policy_dag` from separate
    :func:`gfncp_pyro.policy.log_prob_orders` calls, one per partition.

    :param nx.DiGraph dag: ``validation.dag.build_dag(N)``, annotated in place.
    :param EnergyNet net: the energy network.
    :param torch.Tensor x: one set ``(N, *point_shape)`` with ``1 <= N <= MAX_POLICY_N``, in
        the network's dtype and device.
    :param flow: the flow parametrisation of the residuals.
    :param float atol: tolerance of the checks. Default: ``1e-6`` in float32 (``1e-9`` in
        float64) plus ``N * eps * max |E|``: a log-probability ``-E - logsumexp(-E)`` carries
        about one unit in the last place of ``|E|``, and a trajectory ``N`` of them (the shipped
        float32 models reach ``|E| ~ 400``, so ``~1e-5`` per state).
    :returns: :func:`check_policy_dag`'s summary plus ``state_disagreement``
        (:func:`annotate_dag`) and ``atol``.
    :raises ValueError: on ``x`` of the wrong shape or size, or a DAG of another ``N``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != len(net.point_shape) + 1:
        raise ValueError(f"x must be one set (N, *point_shape) with point_shape {net.point_shape}")
    n = x.shape[0]
    if not 1 <= n <= MAX_POLICY_N:
        raise ValueError(f"x has N={n} points; the annotated DAG needs 1 <= N <= {MAX_POLICY_N} "
                         "(N! * Bell(N) trajectories)")
    depth = max(d["depth"] for _, d in dag.nodes(data=True))
    if depth != n:
        raise ValueError(f"dag is the DAG of N={depth} points but x has N={n}; build it with build_dag({n})")
    orders, labels = all_trajectories(n)
    orders, labels = orders.to(x.device), labels.to(x.device)
    with torch.no_grad():
        h, u = encode_points(net, x.unsqueeze(0))
        encodings = Encodings(h.expand(orders.shape[0], -1, -1), u.expand(orders.shape[0], -1, -1))
        steps = teacher_force(net, encodings, labels, None, orders)
        offsets = state_log_flow_offsets(net, encodings, None, orders) if flow == "offset" else None
        per_order = math.factorial(n)
        reference = torch.cat([log_prob_orders(net, x, labels[i], orders[i:i + per_order])
                               for i in range(0, orders.shape[0], per_order)])
    if atol is None:
        scale = float(torch.where(steps.candidate_mask, steps.energies, 0.0).abs().max())
        base = 1e-9 if x.dtype == torch.float64 else 1e-6
        atol = base + n * torch.finfo(x.dtype).eps * scale
    disagreement = annotate_dag(dag, orders.cpu(), labels.cpu(), steps, flow,
                                None if offsets is None else offsets.cpu())
    if disagreement > atol:
        raise AssertionError(f"trajectories through the same state disagree on its policy by {disagreement!r}")
    summary = check_policy_dag(dag, orders.cpu(), labels.cpu(), reference.cpu(), atol)
    summary["state_disagreement"], summary["atol"] = disagreement, atol
    return summary
