"""The losses against literal loops over the paper's formulas and hand-built flows."""

import math

import pytest
import torch
from hypothesis import given

import reference as ref
from gfncp_pyro.losses import (
    contrastive_divergence,
    energy_regularizer,
    final_energy,
    marginal_consistency,
    ncp_nll,
)
from gfncp_pyro.partitions import enumerate_partitions
from gfncp_pyro.policy import StepEnergies, teacher_force, trajectory_log_prob

TOL = {torch.float64: 1e-9, torch.float32: 1e-5}
NETS = {dtype: ref.make_net(5, dtype) for dtype in TOL}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=ref.padded_batches())
def test_losses_match_reference(dtype, batch):
    net = NETS[dtype]
    x, labels, mask, orders = ref.to_batch(*batch, dtype)
    with torch.no_grad():
        steps = teacher_force(net, x, labels, mask, orders)
        losses = {flow: marginal_consistency(steps, flow) for flow in ("consistent", "paper")}
        nll, final = ncp_nll(steps), final_energy(steps)
    tol = TOL[dtype]
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        actions, rows = ref.step_energies(net, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        # float32: errors scale with the energies' size and with the number of squared terms
        scale = tol * n * max(1.0, max(row.abs().max().item() for row in rows))
        for flow, loss in losses.items():
            expected = ref.marginal_consistency(actions, rows, flow)
            # d(sum r^2) = sum 2 r dr: the error grows with the residuals' size
            assert math.isclose(loss[b].item(), expected, rel_tol=tol,
                                abs_tol=scale * (1 + 2 * math.sqrt(expected)))
        assert math.isclose(nll[b].item(), -ref.log_prob(actions, rows), abs_tol=scale)
        assert math.isclose(final[b].item(), rows[-1][actions[-1]].item(), rel_tol=tol, abs_tol=tol)


def hand_built(energy_rows, actions) -> StepEnergies:
    """StepEnergies of one set from lists of candidate energies (no network)."""
    n, width = len(energy_rows), max(len(row) for row in energy_rows) + 1
    energies = torch.full((1, n, width), math.inf, dtype=torch.float64)
    for t, row in enumerate(energy_rows):
        energies[0, t, : len(row)] = torch.tensor(row, dtype=torch.float64)
    return StepEnergies(energies, torch.isfinite(energies), torch.tensor([actions]),
                        torch.ones(1, n, dtype=torch.bool))


def test_marginal_consistency_by_hand():
    # steps: t=0 one candidate; t=1 two; t=2 two (a_1 = 0); t=3 three (last step).
    rows = [[0.5], [1.0, 2.0], [0.3, 0.7], [2.0, 1.0, 4.0]]
    steps = hand_built(rows, [0, 0, 1, 2])

    def lse_neg(values):
        return math.log(sum(math.exp(-v) for v in values))

    consistent = ((0.5 + lse_neg(rows[1])) ** 2 + (1.0 + lse_neg(rows[2])) ** 2
                  + (0.7 + lse_neg(rows[3])) ** 2)
    # Ehat: step 0 -> 0, steps 1 and 2 shifted by their minimum, the last step unshifted.
    paper = ((0.0 + lse_neg([0.0, 1.0])) ** 2 + (0.0 + lse_neg([0.0, 0.4])) ** 2
             + (0.4 + lse_neg(rows[3])) ** 2)
    assert math.isclose(marginal_consistency(steps).item(), consistent, rel_tol=1e-12)
    assert math.isclose(marginal_consistency(steps, "paper").item(), paper, rel_tol=1e-12)
    assert final_energy(steps).item() == 4.0


def test_consistent_flow_is_zero_exactly_for_true_marginals():
    """Energies set to -log of the exact prefix marginals of a distribution over partitions:
    the unshifted flow has zero loss and the policy recovers p; the paper's shifted flow cannot
    be zero for this non-deterministic policy."""
    n = 5
    partitions = enumerate_partitions(n)
    p = torch.softmax(torch.randn(partitions.shape[0], generator=torch.Generator().manual_seed(0),
                                  dtype=torch.float64), 0)

    def log_marginal(prefix):
        hit = (partitions[:, : len(prefix)] == torch.tensor(prefix)).all(1)
        return math.log(p[hit].sum().item())

    for index in (0, 7, partitions.shape[0] - 1):
        actions = partitions[index].tolist()
        rows = []
        for t in range(n):
            num_open = max(actions[:t], default=-1) + 1
            rows.append([-log_marginal(actions[:t] + [k]) for k in range(num_open + 1)])
        steps = hand_built(rows, actions)
        assert marginal_consistency(steps).item() < 1e-20
        assert marginal_consistency(steps, "paper").item() > 1e-3
        assert math.isclose(trajectory_log_prob(steps).item(), math.log(p[index].item()),
                            rel_tol=1e-12)


def test_short_sets_and_padding():
    steps = hand_built([[1.0], [0.5, 0.25]], [0, 1])
    single = StepEnergies(steps.energies[:, :1], steps.candidate_mask[:, :1], steps.actions[:, :1],
                          steps.step_mask[:, :1])
    assert marginal_consistency(single).item() == 0.0 == ncp_nll(single).item()
    assert final_energy(single).item() == 1.0
    # N = 2: the paper's Ehat is 0 at the first step and unshifted at the last
    expected = math.log(math.exp(-0.5) + math.exp(-0.25)) ** 2
    assert math.isclose(marginal_consistency(steps, "paper").item(), expected, rel_tol=1e-12)
    first_step = torch.tensor([True, False])[:, None]
    padded = StepEnergies(steps.energies, steps.candidate_mask & first_step,
                          torch.tensor([[0, -1]]), torch.tensor([[True, False]]))
    assert marginal_consistency(padded).item() == 0.0
    assert final_energy(padded).item() == 1.0


def test_contrastive_divergence_and_regularizer():
    data = torch.tensor([1.0, -2.0], requires_grad=True)
    sample = torch.tensor([0.5, 3.0], requires_grad=True)
    cd = contrastive_divergence(data, sample)
    assert cd.tolist() == [0.5, -5.0]
    cd.sum().backward()  # Eq. (27): +grad E[c] - grad E[c~]
    assert data.grad.tolist() == [1.0, 1.0] and sample.grad.tolist() == [-1.0, -1.0]
    assert energy_regularizer(torch.tensor([3.0, -0.5])).tolist() == [9.0, 0.25]
    with pytest.raises(ValueError, match="same shape"):
        contrastive_divergence(data, sample[:1])


def test_unknown_flow_raises():
    with pytest.raises(ValueError, match="flow"):
        marginal_consistency(hand_built([[1.0]], [0]), "shifted")


@pytest.mark.parametrize("flow", ["consistent", "paper"])
def test_all_losses_give_finite_gradients_to_every_parameter(flow):
    net = ref.make_net(6, torch.float64)
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1, 3], [0, 0], [0]],
                                           [[5, 0, 2, 4, 1, 3], [1, 0], [0]], 13, torch.float64)
    steps = teacher_force(net, x, labels, mask, orders)
    sample = teacher_force(net, x, torch.zeros_like(labels).where(mask, -1), mask)
    final = final_energy(steps)
    loss = (marginal_consistency(steps, flow) + 0.6 * energy_regularizer(final)
            + 0.4 * contrastive_divergence(final, final_energy(sample)) + ncp_nll(steps)).sum()
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
