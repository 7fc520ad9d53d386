"""Log-flow offsets of the states along trajectories: the heads that shape GFNCP's state flows.

With ``flow="offset"`` or ``flow="state"`` (:func:`gfncp_pyro.losses.marginal_consistency`) the
state after step ``t`` has log-flow ``-E[t, a_t] + b_t``, where ``b_t`` is shared by all the
candidates of step ``t``, so the policy (Eq. 21 in [1]) and the reward (Eq. 22) are those of the
energy alone: :func:`state_log_flow_offsets` (label-free, from which points are assigned) and
:func:`parent_log_flow_offsets` (from the parent state's features, 0 on terminal states).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import torch

from ._checks import check_encodings, check_mask, check_orders
from .nn import EnergyNet
from .policy import Encodings, StepEnergies, _autocast

__all__ = ["state_log_flow_offsets", "parent_log_flow_offsets"]


def state_log_flow_offsets(
    net: EnergyNet,
    encodings: Encodings,
    mask: torch.Tensor | None = None,
    orders: torch.Tensor | None = None,
    *,
    bf16: bool = False,
) -> torch.Tensor:
    """Log-flow offsets ``b_t = b(A_t, U_{t+1})`` of the states along each order, ``(B, N_max)``.

    ``A_t`` sums ``u`` over the points assigned by steps ``0..t``, ``U_{t+1}`` over the others
    (:meth:`~gfncp_pyro.nn.EnergyNet.log_flow_offset`; ``U = 0`` in online mode). ``b_t``
    depends on which points are assigned, not on their labels, so it is shared by all the
    candidates of a step: with ``flow="offset"`` the state after step ``t`` has log-flow
    ``-E[t, a_t] + b_t`` and the policy is unchanged. 0 at padding.

    :param Encodings encodings: :func:`~gfncp_pyro.policy.encode_points` ``(B, N_max, h_dim)``.
    :param mask: ``(B, N_max)`` bool (default all ``True``); ``orders``: as in
        :func:`~gfncp_pyro.policy.teacher_force`.
    """
    h, u = check_encodings(net, encodings)
    shape, device, dtype = tuple(h.shape[:2]), h.device, h.dtype
    mask = check_mask(mask, shape, device)
    orders = check_orders(orders, mask)
    u = u.gather(1, orders.unsqueeze(-1).expand(-1, -1, u.shape[-1]))
    u = torch.where(mask.unsqueeze(-1), u, 0.0)
    assigned = u.cumsum(1)
    unassigned = assigned[:, -1:] - assigned
    if net.config.online:
        unassigned = torch.zeros_like(unassigned)
    with _autocast(device, bf16):
        offsets = net.log_flow_offset(assigned, unassigned).to(dtype)
    return torch.where(mask, offsets, 0.0)


def parent_log_flow_offsets(net: EnergyNet, step_energies: StepEnergies, *, bf16: bool = False) -> torch.Tensor:
    """Per-state log-flow offsets ``beta_t`` of ``flow="state"``, ``(B, N_max)``.

    ``beta_t = net.state_log_flow_offset(state_features[:, t])`` is a function of the state
    before step ``t`` (its clusters, not only which points it holds) and is shared by all the
    candidates of step ``t``: the state after step ``t`` has log-flow ``-E[t, a_t] + beta_t``,
    so the policy (a softmax over the candidates) is unchanged. ``beta`` is 0 at the last step
    (terminal states keep the reward ``exp(-E[c_{1:N}])``, Eq. 22 in [1]) and at padding.

    :param StepEnergies step_energies: from :func:`~gfncp_pyro.policy.teacher_force` (it carries the features).
    """
    features = step_energies.state_features
    if features is None:
        raise ValueError("these StepEnergies carry no state_features; compute them with teacher_force")
    device = features.device
    with _autocast(device, bf16):
        beta = net.state_log_flow_offset(features).to(features.dtype)
    last = step_energies.step_mask.sum(1, keepdim=True) - 1
    steps = torch.arange(features.shape[1], device=device)
    keep = step_energies.step_mask & (steps < last)
    return torch.where(keep, beta, 0.0)
