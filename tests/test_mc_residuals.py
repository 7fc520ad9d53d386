"""Per-step residuals of Eq. (24) (losses.marginal_consistency_residuals) against a slow loop."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro.losses import marginal_consistency, marginal_consistency_residuals
from gfncp_pyro.data.sets import random_step_subset
from gfncp_pyro.policy import teacher_force

NET = ref.make_net(13, torch.float64)
FLOWS = ("consistent", "paper")


def slow_residuals(actions: list[int], rows: list[torch.Tensor], flow: str) -> list[float]:
    """``r[t] = Ehat[t-1, a_{t-1}] + log sum_k exp(-Ehat[t, k])`` for ``t >= 1``; ``r[0] = 0``.

    ``Ehat`` as printed in Sec. 4 of [1] (0-based steps): ``Ehat[0] = 0``, ``E - min`` over the
    step's candidates in between, ``E`` at the last step; ``flow="consistent"``: ``Ehat = E``.
    """
    n = len(actions)
    ehat = []
    for t, row in enumerate(rows):
        energies = [float(e) for e in row.detach()]
        if flow == "paper" and t == 0:
            energies = [0.0 for _ in energies]
        elif flow == "paper" and t < n - 1:
            energies = [e - min(energies) for e in energies]
        ehat.append(energies)
    out = [0.0]
    for t in range(1, n):
        children = math.fsum(math.exp(-e) for e in ehat[t])
        out.append(ehat[t - 1][actions[t - 1]] + math.log(children))
    return out


@given(batch=ref.padded_batches(), flow=st.sampled_from(FLOWS), num_steps=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_residuals_match_a_slow_loop_and_sum_to_the_loss(batch, flow, num_steps, seed):
    x, labels, mask, orders = ref.to_batch(*batch, torch.float64)
    with torch.no_grad():
        steps = teacher_force(NET, x, labels, mask, orders)
        residuals = marginal_consistency_residuals(steps, flow)
        subset = random_step_subset(mask.sum(1), num_steps, seed)
        sub_steps = teacher_force(NET, x, labels, mask, orders, step_subset=subset,
                                  parent_candidates=flow == "paper")
        sub_residuals = marginal_consistency_residuals(sub_steps, flow)
    assert residuals.shape == mask.shape and residuals.dtype == torch.float64
    expected = torch.zeros_like(residuals)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        actions, rows = ref.step_energies(NET, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        expected[b, :n] = torch.tensor(slow_residuals(actions, rows, flow), dtype=torch.float64)
    assert torch.allclose(residuals, expected, rtol=0, atol=1e-9)  # 0 at t = 0 and padding
    assert torch.equal(residuals.square().sum(1), marginal_consistency(steps, flow))
    # A step subset: the same residuals at the selected steps, 0 elsewhere; the loss scales
    # their sum of squares by (N_b - 1) / S_b.
    assert torch.allclose(sub_residuals, torch.where(subset, residuals, 0.0), rtol=0, atol=1e-12)
    scale = (mask.sum(1) - 1).double() / subset.sum(1).clamp(min=1)
    assert torch.allclose(marginal_consistency(sub_steps, flow), scale * sub_residuals.square().sum(1),
                          rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_residuals_follow_dtype_and_carry_gradients(dtype):
    net = ref.make_net(13, dtype)
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2], [0, 0]], [[2, 0, 3, 1], [1, 0]], 7, dtype)
    residuals = marginal_consistency_residuals(teacher_force(net, x, labels, mask, orders), "paper")
    assert residuals.dtype == dtype and residuals.requires_grad
    residuals.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_residuals_reject_bad_input():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 1]], [[0, 1, 2, 3]], 3, torch.float64)
    with torch.no_grad():
        steps = teacher_force(NET, x, labels, mask, orders)
        subset = teacher_force(NET, x, labels, mask, orders,
                               step_subset=torch.tensor([[False, False, True, False]]))
    with pytest.raises(ValueError, match="flow must be one of"):
        marginal_consistency_residuals(steps, "shifted")
    with pytest.raises(ValueError, match="parent_candidates=True"):
        marginal_consistency_residuals(subset, "paper")
