"""Training losses of GFNCP (Sec. 4.1 in [1]) and NCP (Eq. 11 in [1]), per set.

Every function takes tensors (mostly the :class:`~gfncp_pyro.policy.StepEnergies` of one
teacher-forced pass) and returns one value per set, ``(B,)``; the trainer weighs and averages
them (Eq. 29 in [1]): MC and reg on data and on uniformly random partitions of the same points,
CD on data only. The uniform partitions of Alg. 1, line 9 come from
:func:`gfncp_pyro.partitions.sample_uniform_partitions`.

Energy sign: probabilities are proportional to ``exp(-E)``, a log-flow is ``-E``.

MC and NCP's NLL are sums over steps. On step energies of a random step subset
(:func:`gfncp_pyro.data.sets.random_step_subset`, ``teacher_force(..., step_subset=...)``) they
return ``(N_b - 1) / S_b`` times the sum over the ``S_b`` selected steps of set ``b``: each of
the ``N_b - 1`` steps ``t >= 1`` is selected with probability ``S_b / (N_b - 1)``, so this is an
unbiased estimate of the full sum (step 0 contributes 0 to both).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ._checks import check_every_step
from .policy import StepEnergies, _shift, step_log_normalizer, taken_energies, trajectory_log_prob

__all__ = [
    "FLOWS",
    "marginal_consistency",
    "marginal_consistency_residuals",
    "contrastive_divergence",
    "energy_regularizer",
    "final_energy",
    "first_energy",
    "normalizer_gauge",
    "ncp_nll",
    "trajectory_balance",
    "trajectory_variance",
]

FLOWS = ("consistent", "paper", "offset", "state")
"""Flow parametrisations accepted by :func:`marginal_consistency`."""


def _paper_energies(step_energies: StepEnergies) -> torch.Tensor:
    """The paper's normalised energies ``Ehat`` (Sec. 4 in [1]), 0-based steps, 0 off-mask.

    ``Ehat[0, 0] = 0``; ``Ehat[t, k] = E[t, k] - min_k' E[t, k']`` for ``1 <= t < N - 1``;
    ``Ehat[N - 1, k] = E[N - 1, k]``.
    """
    energies, candidates, steps = (step_energies.energies, step_energies.candidate_mask,
                                   step_energies.step_mask)
    safe = torch.where(candidates, energies, 0.0)
    lowest = torch.where(candidates, safe, math.inf).amin(-1, keepdim=True)
    lowest = torch.where(candidates.any(-1, keepdim=True), lowest, 0.0)
    t = torch.arange(steps.shape[1], device=steps.device)
    last = steps.sum(1, keepdim=True) - 1
    interior = ((t >= 1) & (t < last)).unsqueeze(-1)
    shifted = torch.where(interior, safe - lowest, safe)
    shifted = torch.where((t == 0).view(1, -1, 1), 0.0, shifted)
    return torch.where(candidates, shifted, 0.0)


def _residual_steps(step_energies: StepEnergies) -> torch.Tensor:
    """``(B, N_max)`` bool: the steps that carry a residual, the real steps ``t >= 1`` (or the
    selected ones on a step subset)."""
    if step_energies.step_subset is not None:
        return step_energies.step_subset
    steps = step_energies.step_mask.clone()
    steps[:, 0] = False
    return steps


def _sum_over_steps(step_energies: StepEnergies, per_step: torch.Tensor) -> torch.Tensor:
    """``sum_t per_step[:, t]`` over steps ``t >= 1``, or its unbiased estimate on a subset.

    :param torch.Tensor per_step: ``(B, N_max)``, read at the real steps ``t >= 1`` (or at the
        selected ones); other entries are ignored.
    """
    subset = step_energies.step_subset
    total = torch.where(_residual_steps(step_energies), per_step, 0.0).sum(1)
    if subset is None:
        return total
    selected = subset.sum(1)
    num_steps = step_energies.step_mask[:, 1:].sum(1)  # N_b - 1
    scale = num_steps.to(per_step.dtype) / selected.clamp(min=1).to(per_step.dtype)
    return torch.where(selected > 0, total * scale, 0.0)


def _check_parent_candidates(step_energies: StepEnergies) -> None:
    """The paper's flow needs every candidate of step ``t - 1`` for each selected ``t >= 2``."""
    subset = step_energies.step_subset
    if subset is None:
        return
    counts = step_energies.candidate_mask.sum(-1)  # an interior step has >= 2 candidates
    parent_partial = subset[:, 2:] & (counts[:, 1:-1] < 2)
    if bool(parent_partial.any()):
        raise ValueError(
            "flow='paper' needs every candidate of the step before each selected step (its "
            "minimum energy); compute the step energies with teacher_force(..., "
            "step_subset=..., parent_candidates=True)"
        )


def _check_offsets(step_energies: StepEnergies, flow: str, offsets) -> None:
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
    if flow in ("offset", "state"):
        if offsets is None:
            raise ValueError(f"flow={flow!r} needs offsets= (flow='offset': flows.state_log_flow_offsets(net, "
                             "encodings, mask, orders) with flow_head=True; flow='state': "
                             "flows.parent_log_flow_offsets(net, step_energies) with state_head=True)")
        if offsets.shape != step_energies.step_mask.shape:
            raise ValueError(f"offsets must have shape {tuple(step_energies.step_mask.shape)} (B, N_max), "
                             f"got {tuple(offsets.shape)}")
    elif offsets is not None:
        raise ValueError(f"offsets apply to flow='offset' or 'state' only, got flow={flow!r}")


def marginal_consistency_residuals(
    step_energies: StepEnergies, flow: Literal["consistent", "paper", "offset", "state"] = "consistent",
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """The terms that Eq. (24) in [1] squares, one per step, ``(B, N_max)``.

    In 0-based steps, ``r[:, t] = E[t-1, a_{t-1}] + logsumexp_k(-E[t, k])`` for ``t >= 1``:
    the log of the summed flows of the children of the state after step ``t - 1`` minus that
    state's log-flow (a state has one parent, so this is its flow-matching residual, Eq. 23
    in [1]); ``r > 0`` means the children carry more flow than their parent.
    :func:`marginal_consistency` is the sum of ``r ** 2`` over the steps (scaled on a subset).

    :param StepEnergies step_energies: from :func:`~gfncp_pyro.policy.teacher_force`.
    :param flow: ``"consistent"``, ``"paper"`` or ``"offset"``, see :func:`marginal_consistency`.
    :param torch.Tensor offsets: ``(B, N_max)`` log-flow offsets ``b_t`` of the states after each
        step, for ``flow="offset"`` (label-free,
        :func:`~gfncp_pyro.flows.state_log_flow_offsets`) or ``flow="state"`` (per parent state,
        :func:`~gfncp_pyro.flows.parent_log_flow_offsets`); then ``r[:, t]`` gains
        ``b_t - b_{t-1}``.
    :returns: ``(B, N_max)``; 0 at ``t = 0`` and at padding, and on step energies of a step
        subset also at the steps not selected.
    :raises ValueError: on an unknown ``flow``, missing or misplaced ``offsets``, or
        ``flow="paper"`` on a step subset computed without ``parent_candidates=True``.
    """
    _check_offsets(step_energies, flow, offsets)
    if flow == "paper":
        _check_parent_candidates(step_energies)
        energies = _paper_energies(step_energies)
        index = step_energies.actions.clamp(min=0).unsqueeze(-1)
        taken = energies.gather(2, index).squeeze(-1)
        children = step_log_normalizer(step_energies, energies)
    else:
        taken = taken_energies(step_energies)
        children = step_log_normalizer(step_energies)
    residual = _shift(taken) + children  # step t: parent t - 1 against its children
    if offsets is not None:
        residual = residual + offsets - _shift(offsets)
    return torch.where(_residual_steps(step_energies), residual, 0.0)


def marginal_consistency(
    step_energies: StepEnergies, flow: Literal["consistent", "paper", "offset", "state"] = "consistent",
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Marginal-consistency (flow-matching) loss, Eq. (24) in [1], per set ``(B,)``.

    ``sum_{t=1}^{N-1} (E[t-1, a_{t-1}] + logsumexp_k(-E[t, k]))^2`` in 0-based steps, i.e. the
    parent's log-flow against the log of its children's summed flows (the squares of
    :func:`marginal_consistency_residuals`). On step energies of a step subset:
    ``(N_b - 1) / S_b`` times the sum over the ``S_b`` selected steps, an unbiased estimate
    (see the module docstring).

    :param StepEnergies step_energies: from :func:`~gfncp_pyro.policy.teacher_force`.
    :param flow: ``"consistent"``: unshifted log-flows ``log F(s_t) = -E[c_{1:t}]``; a
        consistent model can make every residual zero, and then ``exp(-E[c_1])`` is the
        partition function. ``"paper"``: the min-shifted ``Ehat`` of Sec. 4 in [1]
        (``Ehat[c_1] = 0``, ``Ehat = E - min`` over the step's candidates for ``2 <= n < N``,
        ``Ehat[c_{1:N}] = E[c_{1:N}]``). With that shift every intermediate flow is ``<= 1``
        while the children's flows sum to ``>= 1``, so the loss can be zero only for a
        deterministic policy. ``"offset"``: ``log F(s_t) = -E[c_{1:t}] + b_t`` with a label-free
        offset ``b_t`` per state (``offsets``, from the network's flow head); ``b`` cancels in the
        policy and is one constant per set on terminal states, so policy and reward are those of
        the shared energy, while ``b`` carries the log-normaliser of each step's marginals.
        Zero exactly when the energy's marginals are consistent up to one constant per
        assigned set, which is what Eq. (23) needs. ``"state"``: the same with an offset
        ``beta_t`` computed from the parent state's features (its clusters too), shared by the
        parent's children and 0 on terminal states: the state flows are then free up to
        Eq. (23), which makes the loss a detailed-balance loss whose residuals sum to the
        trajectory-balance residual ``log F(s_0) + log q(c | x, rho) - log R(c)``; it is zero
        for every trajectory iff ``q(c | x, rho)`` is the normalised reward for every order.
    :param torch.Tensor offsets: for ``flow="offset"``, see
        :func:`marginal_consistency_residuals`.
    :raises ValueError: on an unknown ``flow``, missing or misplaced ``offsets``, or
        ``flow="paper"`` on a step subset computed without ``parent_candidates=True``.
    """
    residual = marginal_consistency_residuals(step_energies, flow, offsets)
    return _sum_over_steps(step_energies, residual.square())


def trajectory_balance(
    step_energies: StepEnergies, flow: Literal["consistent", "offset", "state"] = "consistent",
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Trajectory-balance form of the same identity, per set ``(B,)``.

    Here each edge flow is its child's state flow, so the flow-matching residual of step ``t``
    is also the detailed-balance residual ``log F(s_{t-1}) + log P(a_t | s_{t-1}) - log F(s_t)``
    (up to sign), and the residuals telescope:
    ``sum_t r_t = log F(s_0) + log q(c | x, rho) - log F(s_{N-1})``. This returns
    ``(sum_t r_t)^2`` along the data trajectory: zero for every trajectory iff
    ``q(c | x, rho) = R(c) / F(s_0)`` for every order (Eq. 19 in [1]), with
    ``log F(s_0) = -E[c_1] (+ b_0)`` as the learned log-partition function.

    :raises ValueError: on step energies of a step subset (the sum needs every step), or
        ``flow="paper"`` (its flows do not telescope to the reward).
    """
    check_every_step(step_energies.step_subset, "trajectory_balance")
    if flow == "paper":
        raise ValueError("trajectory_balance needs flow='consistent', 'offset' or 'state'")
    return marginal_consistency_residuals(step_energies, flow, offsets).sum(1).square()


def trajectory_variance(log_q: torch.Tensor, energy_final: torch.Tensor) -> torch.Tensor:
    """Trajectory balance with the log-partition function optimised out, per set ``(B,)``.

    For ``T`` trajectories ``i`` of the same set (partitions ``c_i`` along orders ``rho_i``),
    ``delta_i = log q(c_i | x, rho_i) + E[c_i]`` is ``log q - log R``; trajectory balance asks
    ``delta_i = -log Z(x)`` for all of them, and the best constant is their mean, so the loss is
    the (population) variance of ``delta`` over the ``T`` trajectories. Zero iff ``q(c | x,
    rho)`` is proportional to the reward ``exp(-E[c])`` on those trajectories (Eq. 19 in [1]);
    for one partition along several orders, the variance of ``log q(c | x, rho)`` over orders.

    :param torch.Tensor log_q: ``(T, B)`` trajectory log-probabilities (Eq. 30 without 1/N!).
    :param torch.Tensor energy_final: ``(T, B)`` energies ``E[c_{1:N}]`` of their partitions.
    """
    if log_q.shape != energy_final.shape or log_q.ndim != 2 or log_q.shape[0] < 2:
        raise ValueError(f"log_q and energy_final must both be (T, B) with T >= 2 trajectories per set, got "
                         f"{tuple(log_q.shape)} and {tuple(energy_final.shape)}")
    return (log_q + energy_final).var(0, correction=0)


def final_energy(step_energies: StepEnergies) -> torch.Tensor:
    """Energy of the full partition ``E[c_{1:N}] = E[N_b - 1, a_{N_b - 1}]`` per set ``(B,)``.

    :raises ValueError: on step energies of a step subset (use
        :func:`~gfncp_pyro.policy.partition_energy` there).
    """
    check_every_step(step_energies.step_subset, "final_energy")
    last = step_energies.step_mask.sum(1, keepdim=True) - 1
    return taken_energies(step_energies).gather(1, last).squeeze(1)


def first_energy(step_energies: StepEnergies) -> torch.Tensor:
    """Energy of the first state ``E[c_1] = E[0, 0]`` per set ``(B,)``: the learned
    ``-log`` partition function of the consistent flow (``-log F(s_0)``)."""
    return taken_energies(step_energies)[:, 0]


def normalizer_gauge(step_energies: StepEnergies) -> torch.Tensor:
    """Mean square of the non-terminal steps' log-normalisers ``logsumexp_k(-E[t, k])``, ``(B,)``.

    Steps ``t = 0 .. N_b - 2`` (or the selected ones among them on a step subset); 0 for
    ``N_b = 1``. Adding a constant to all candidates of a step changes neither the policy
    (Eqs. 10 and 21 in [1]) nor, with a per-state flow offset that absorbs it, any flow: this
    penalty only picks the energies' level in that free direction (a gauge fix).
    """
    lse = step_log_normalizer(step_energies)
    last = step_energies.step_mask.sum(1, keepdim=True) - 1
    t = torch.arange(lse.shape[1], device=lse.device)
    steps = step_energies.step_mask & (t < last)
    if step_energies.step_subset is not None:
        steps = steps & step_energies.candidate_mask.any(-1)
    count = steps.sum(1)
    total = torch.where(steps, lse.square(), 0.0).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1).to(total.dtype), 0.0)


def contrastive_divergence(energy_data: torch.Tensor, energy_sample: torch.Tensor) -> torch.Tensor:
    """Surrogate of the reward loss, ``E[c_{1:N}] - E[c~_{1:N}]`` per set ``(B,)``.

    Its gradient is the contrastive-divergence gradient of Eq. (27) in [1] with one policy
    sample ``c~`` (drawn under ``no_grad``, re-scored by one teacher-forced pass, with grad).

    :param torch.Tensor energy_data: ``(B,)`` :func:`final_energy` of the data partitions.
    :param torch.Tensor energy_sample: ``(B,)`` :func:`final_energy` of the policy samples.
    """
    if energy_data.shape != energy_sample.shape:
        raise ValueError(
            f"energy_data {tuple(energy_data.shape)} and energy_sample "
            f"{tuple(energy_sample.shape)} must have the same shape (B,)"
        )
    return energy_data - energy_sample


def energy_regularizer(energy_final: torch.Tensor) -> torch.Tensor:
    """Energy regulariser ``E[c_{1:N}]^2`` of Eq. (28) in [1], elementwise ``(B,)``."""
    return energy_final.square()


def ncp_nll(step_energies: StepEnergies) -> torch.Tensor:
    """NCP's loss, Eq. (11) in [1]: ``-log q(c | x)`` along the given order, per set ``(B,)``.

    On step energies of a step subset: ``(N_b - 1) / S_b`` times the selected steps'
    ``-log P(a_t | a_{<t})``, an unbiased estimate (see the module docstring).
    """
    if step_energies.step_subset is None:
        return -trajectory_log_prob(step_energies)
    per_step = taken_energies(step_energies) + step_log_normalizer(step_energies)
    return _sum_over_steps(step_energies, per_step)
