"""Step subsets: the sampler, subsampled teacher forcing and the unbiased loss estimates."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro.losses import final_energy, marginal_consistency, ncp_nll
from gfncp_pyro.data.sets import random_step_subset
from gfncp_pyro.policy import teacher_force, trajectory_log_prob

NETS = {dtype: ref.make_net(21, dtype) for dtype in (torch.float64, torch.float32)}
NET = NETS[torch.float64]
FLOWS = ("consistent", "paper")


def every_step(mask: torch.Tensor) -> torch.Tensor:
    """The subset selecting all steps t = 1..N_b-1."""
    subset = mask.clone()
    subset[:, 0] = False
    return subset


# ------------------------------------------------------------------------------------------
# random_step_subset
# ------------------------------------------------------------------------------------------


@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), num_steps=st.integers(1, 10),
       seed=st.integers(0, 2**31 - 1))
def test_subset_selects_min_of_steps_and_length_minus_one(lengths, num_steps, seed):
    lengths = torch.tensor(lengths)
    subset = random_step_subset(lengths, num_steps, torch.Generator().manual_seed(seed))
    assert subset.dtype == torch.bool and subset.shape == (len(lengths), int(lengths.max()))
    assert torch.equal(subset.sum(1), (lengths - 1).clamp(max=num_steps))
    steps = torch.arange(subset.shape[1])
    assert not bool((subset & ((steps == 0) | (steps >= lengths[:, None]))).any())
    again = random_step_subset(lengths, num_steps, seed)
    assert torch.equal(subset, again)  # an int seed is a CPU generator seeded with it
    wide = random_step_subset(lengths, num_steps, seed, n_max=12)
    assert wide.shape == (len(lengths), 12) and torch.equal(wide[:, : subset.shape[1]], subset)


def test_subset_steps_are_uniform():
    """Each eligible step is selected with probability S / (N - 1), every pair equally often."""
    n, size, draws = 7, 2, 6000
    subset = random_step_subset(torch.full((draws,), n), size, 3)
    freq = subset.double().mean(0)
    p = size / (n - 1)
    assert freq[0] == 0
    assert torch.allclose(freq[1:], torch.full((n - 1,), p, dtype=torch.float64),
                          atol=5 * math.sqrt(p * (1 - p) / draws))
    pairs = subset[:, 1:].nonzero()[:, 1].reshape(draws, size)
    counts = torch.bincount(pairs[:, 0] * n + pairs[:, 1], minlength=n * n).double()
    counts = counts[counts > 0]
    expected = draws / math.comb(n - 1, size)
    assert counts.numel() == math.comb(n - 1, size)
    assert ((counts - expected) ** 2 / expected).sum() < 45  # chi2(14) quantile 1 - 1e-4: 41.1


def test_subset_bad_inputs():
    with pytest.raises(ValueError, match="lengths"):
        random_step_subset(torch.tensor([[3]]), 2)
    with pytest.raises(ValueError, match="lengths"):
        random_step_subset(torch.tensor([3.0]), 2)
    with pytest.raises(ValueError, match="lengths"):
        random_step_subset(torch.tensor([3, 0]), 2)
    with pytest.raises(ValueError, match="num_steps"):
        random_step_subset(torch.tensor([3]), 0)
    with pytest.raises(ValueError, match="n_max"):
        random_step_subset(torch.tensor([3]), 1, n_max=2)
    with pytest.raises(ValueError, match="generator"):
        random_step_subset(torch.tensor([3]), 1, "seed")


# ------------------------------------------------------------------------------------------
# Subsampled teacher forcing
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=ref.padded_batches(max_n=8), seed=st.integers(0, 2**31 - 1),
       num_steps=st.integers(1, 4), parents=st.booleans())
def test_subset_energies_match_reference(dtype, batch, seed, num_steps, parents):
    net = NETS[dtype]
    x, labels, mask, orders = ref.to_batch(*batch, dtype)
    subset = random_step_subset(mask.sum(1), num_steps, seed)
    with torch.no_grad():
        steps = teacher_force(net, x, labels, mask, orders, step_subset=subset,
                              parent_candidates=parents)
    assert torch.equal(steps.step_subset, subset)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        actions, rows = ref.step_energies(net, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        assert steps.actions[b, :n].tolist() == actions
        for t, row in enumerate(rows):
            selected = bool(subset[b, t])
            parent = t + 1 < n and bool(subset[b, t + 1])
            computed = steps.candidate_mask[b, t]
            if selected or (parent and parents):
                expected = torch.arange(computed.shape[0]) < row.shape[0]
            else:
                expected = torch.zeros_like(computed)
                expected[actions[t]] = parent
            assert torch.equal(computed, expected), (b, t)
            scale = tol * max(1.0, row.abs().max().item())
            values = steps.energies[b, t, : row.shape[0]]
            assert torch.allclose(values[computed[: row.shape[0]]], row[computed[: row.shape[0]]],
                                  rtol=tol, atol=scale)
            assert torch.isinf(steps.energies[b, t][~computed]).all()
        assert not steps.candidate_mask[b, n:].any()


@given(batch=ref.padded_batches(max_n=8))
def test_all_steps_selected_equals_the_full_computation(batch):
    x, labels, mask, orders = ref.to_batch(*batch, torch.float64)
    subset = every_step(mask)
    with torch.no_grad():
        full = teacher_force(NET, x, labels, mask, orders)
        plain = teacher_force(NET, x, labels, mask, orders, step_subset=subset)
        parents = teacher_force(NET, x, labels, mask, orders, step_subset=subset,
                                parent_candidates=True)
    longer = mask.sum(1) > 1  # a one-point set has no residual: nothing is computed for it
    # The same rows go through the same layers, so the results are identical unless a one-point
    # set's row is left out (other matrix shapes may round differently).
    same = (lambda a, b: torch.equal(a, b)) if bool(longer.all()) else (
        lambda a, b: torch.allclose(a, b, rtol=1e-12, atol=1e-12))
    for steps in (plain, parents):
        assert torch.equal(steps.candidate_mask[longer], full.candidate_mask[longer])
        assert not steps.candidate_mask[~longer].any()
        assert same(steps.energies[longer], full.energies[longer])
        assert same(ncp_nll(steps), ncp_nll(full))
    assert same(marginal_consistency(plain), marginal_consistency(full))
    assert same(marginal_consistency(parents, "paper"), marginal_consistency(full, "paper"))


def test_all_steps_selected_is_bitwise_the_full_computation():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1], [0, 0, 1], [0, 1]],
                                           [[4, 0, 2, 1, 3], [2, 0, 1], [1, 0]], 35,
                                           torch.float64)
    with torch.no_grad():
        full = teacher_force(NET, x, labels, mask, orders)
        steps = teacher_force(NET, x, labels, mask, orders, step_subset=every_step(mask),
                              parent_candidates=True)
    assert torch.equal(steps.energies, full.energies)
    for flow in FLOWS:
        assert torch.equal(marginal_consistency(steps, flow), marginal_consistency(full, flow))
    assert torch.equal(ncp_nll(steps), ncp_nll(full))


@pytest.mark.parametrize("flow", ["consistent", "paper", "ncp"])
def test_estimates_average_to_the_full_sums_over_every_subset(flow):
    """The mean of the estimate over all C(N_b - 1, S) subsets equals the full sum, which
    equals the slow reference's."""
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1, 1], [0, 0, 1, 1], [0]],
                                           [[4, 0, 2, 5, 1, 3], [1, 3, 0, 2], [0]], 31,
                                           torch.float64)
    size = 2
    loss = ncp_nll if flow == "ncp" else (lambda steps: marginal_consistency(steps, flow))
    with torch.no_grad():
        full = loss(teacher_force(NET, x, labels, mask, orders))
        for b in range(x.shape[0]):
            n = int(mask[b].sum())
            actions, rows = ref.step_energies(NET, x[b, :n], labels[b, :n], orders[b, :n].tolist())
            expected = (-ref.log_prob(actions, rows) if flow == "ncp"
                        else ref.marginal_consistency(actions, rows, flow))
            assert math.isclose(full[b].item(), expected, rel_tol=1e-9, abs_tol=1e-9)
            choices = list(itertools.combinations(range(1, n), min(size, n - 1)))
            subsets = torch.zeros(len(choices), x.shape[1], dtype=torch.bool)
            for row, steps in enumerate(choices):
                subsets[row, list(steps)] = True
            repeat = lambda t: t[b : b + 1].expand(len(choices), *t.shape[1:])  # noqa: E731
            steps = teacher_force(NET, repeat(x), repeat(labels), repeat(mask), repeat(orders),
                                  step_subset=subsets, parent_candidates=flow == "paper")
            estimates = loss(steps)
            assert math.isclose(estimates.mean().item(), full[b].item(), rel_tol=1e-10,
                                abs_tol=1e-12)
            if n > 3:
                assert estimates.std() > 1e-3 * full[b].abs()  # really a random estimate


def test_estimates_of_random_subsets_are_unbiased():
    """Monte Carlo over random_step_subset: within 5 standard errors of the full sums."""
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1, 1, 3], [0, 0, 1, 1, 0]],
                                           [[4, 0, 6, 2, 5, 1, 3], [1, 3, 0, 4, 2]], 32,
                                           torch.float64)
    draws = 400
    with torch.no_grad():
        full = marginal_consistency(teacher_force(NET, x, labels, mask, orders))
        repeat = lambda t: t.repeat_interleave(draws, 0)  # noqa: E731
        subset = random_step_subset(repeat(mask.sum(1)), 2, 5)
        steps = teacher_force(NET, repeat(x), repeat(labels), repeat(mask), repeat(orders),
                              step_subset=subset)
        estimates = marginal_consistency(steps).reshape(2, draws)
    error = estimates.std(1) / math.sqrt(draws)
    assert ((estimates.mean(1) - full).abs() < 5 * error).all()


@pytest.mark.parametrize("flow", FLOWS)
def test_subset_gradients_are_finite_and_reach_every_parameter(flow):
    net = ref.make_net(22, torch.float64)
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1, 3], [0, 0, 1], [0]],
                                           [[5, 0, 2, 4, 1, 3], [1, 0, 2], [0]], 33,
                                           torch.float64)
    subset = random_step_subset(mask.sum(1), 2, 6)
    steps = teacher_force(net, x, labels, mask, orders, step_subset=subset,
                          parent_candidates=flow == "paper")
    (marginal_consistency(steps, flow) + ncp_nll(steps)).sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_subset_errors():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 1], [0, 0]], [[3, 1, 0, 2], [1, 0]], 34,
                                           torch.float64)
    subset = torch.tensor([[False, False, True, True], [False, True, False, False]])
    steps = teacher_force(NET, x, labels, mask, orders, step_subset=subset)
    for call in (trajectory_log_prob, final_energy):
        with pytest.raises(ValueError, match="every step"):
            call(steps)
    with pytest.raises(ValueError, match="parent_candidates"):
        marginal_consistency(steps, "paper")
    bad = [
        (subset.long(), "bool"),
        (subset[:, :3], "shape"),
        (subset | torch.tensor([[True], [False]]), "steps 1..N_b-1"),
        (subset | torch.tensor([[False, False, False, False], [False, False, True, False]]),
         "steps 1..N_b-1"),
    ]
    for value, match in bad:
        with pytest.raises(ValueError, match=match):
            teacher_force(NET, x, labels, mask, orders, step_subset=value)
