"""Teacher forcing and the policy's log-probabilities against the slow reference."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro.metrics import sdpp
from gfncp_pyro.partitions import PAD_LABEL, bell_number, enumerate_partitions
from gfncp_pyro.policy import (
    StepEnergies,
    encode_points,
    log_prob,
    log_prob_orders,
    partition_energy,
    step_log_probs,
    teacher_force,
)

TOL = {torch.float64: 1e-9, torch.float32: 1e-5}
NETS = {dtype: ref.make_net(0, dtype) for dtype in TOL}


def assert_matches_reference(net, x, labels, mask, orders, tol):
    steps = teacher_force(net, x, labels, mask, orders)
    log_probs = step_log_probs(steps)
    total = log_prob(net, x, labels, mask, orders)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        actions, rows = ref.step_energies(net, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        assert steps.actions[b, :n].tolist() == actions
        assert (steps.actions[b, n:] == PAD_LABEL).all() and not steps.step_mask[b, n:].any()
        ref_log_probs = ref.step_log_probs(rows)
        for t, row in enumerate(rows):
            width = row.shape[0]
            assert steps.candidate_mask[b, t, :width].all()
            assert not steps.candidate_mask[b, t, width:].any()
            assert torch.allclose(steps.energies[b, t, :width], row, rtol=tol, atol=tol)
            assert torch.isinf(steps.energies[b, t, width:]).all()
            # log-probabilities are differences of energies: absolute errors scale with |E|
            scale = tol * max(1.0, row.abs().max().item())
            expected = torch.tensor(ref_log_probs[t], dtype=x.dtype)
            assert torch.allclose(log_probs[b, t, :width], expected, rtol=0, atol=scale)
            assert math.isclose(log_probs[b, t, :width].exp().sum().item(), 1.0, abs_tol=tol)
        assert torch.isinf(steps.energies[b, n:]).all() and torch.isinf(log_probs[b, n:]).all()
        scale = tol * n * max(1.0, max(row.abs().max().item() for row in rows))
        assert math.isclose(total[b].item(), ref.log_prob(actions, rows), abs_tol=scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=ref.padded_batches())
def test_matches_reference(dtype, batch):
    x, labels, mask, orders = ref.to_batch(*batch, dtype)
    with torch.no_grad():
        assert_matches_reference(NETS[dtype], x, labels, mask, orders, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(batch=ref.padded_batches())
def test_partition_energy_is_the_last_taken_energy(dtype, batch):
    net = NETS[dtype]
    x, labels, mask, orders = ref.to_batch(*batch, dtype)
    with torch.no_grad():
        direct = partition_energy(net, x, labels, mask)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        actions, rows = ref.step_energies(net, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        expected = rows[-1][actions[-1]].item()
        assert math.isclose(direct[b].item(), expected, rel_tol=TOL[dtype], abs_tol=TOL[dtype])
        assert direct.dtype == dtype


@pytest.mark.parametrize(
    "config",
    [dict(g_layers=1, f_layers=1), dict(online=True), dict(g_layers=2, f_layers=4, hidden=8)],
    ids=["single-layer-g-and-f", "online", "other-depths"],
)
def test_other_architectures_match_reference(config):
    net = ref.make_net(1, torch.float64, **config)
    batch = ([[0, 1, 0, 2, 1], [0, 0, 1]], [[4, 2, 0, 1, 3], [2, 0, 1]], 5)
    with torch.no_grad():
        assert_matches_reference(net, *ref.to_batch(*batch, torch.float64), TOL[torch.float64])


def test_online_mode_ignores_unassigned_points():
    net = ref.make_net(2, torch.float64, online=True)
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 1]], [[0, 1, 2, 3]], 3, torch.float64)
    moved = x.clone()
    moved[0, 3] += 5.0  # the last point is unassigned before step 3
    with torch.no_grad():
        before = teacher_force(net, x, labels, mask, orders).energies
        after = teacher_force(net, moved, labels, mask, orders).energies
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-12)
    assert not torch.allclose(before[:, 3], after[:, 3])


def test_conv_encoder_on_tiny_image_sets():
    net = ref.make_net(3, torch.float64, encoder="conv")
    x, labels, mask, orders = ref.to_batch([[0, 1, 0], [0, 0]], [[1, 2, 0], [1, 0]], 4,
                                           torch.float64,
                                       point_shape=(1, 28, 28))
    with torch.no_grad():
        assert_matches_reference(net, x, labels, mask, orders, 1e-9)


def test_single_point_set():
    net = NETS[torch.float64]
    x = torch.randn(1, 1, 2, dtype=torch.float64)
    steps = teacher_force(net, x, torch.zeros(1, 1, dtype=torch.long))
    assert steps.energies.shape == (1, 1, 2) and steps.candidate_mask.tolist() == [[[True, False]]]
    assert log_prob(net, x, torch.zeros(1, 1, dtype=torch.long)).tolist() == [0.0]


@pytest.mark.parametrize("n", range(1, 8))
def test_probabilities_of_all_partitions_sum_to_one(n):
    net = NETS[torch.float64]
    gen = torch.Generator().manual_seed(n)
    x = 2 * torch.randn(1, n, 2, generator=gen, dtype=torch.float64)
    labels = enumerate_partitions(n)
    order = torch.randperm(n, generator=gen).expand(labels.shape[0], n)
    with torch.no_grad():
        enc = encode_points(net, x)
        enc = type(enc)(*(e.expand(labels.shape[0], -1, -1) for e in enc))
        steps = teacher_force(net, enc, labels, orders=order)
        total = torch.logsumexp(log_prob_from(steps), 0)
    assert labels.shape[0] == bell_number(n)
    assert abs(total.item()) < 1e-9


def log_prob_from(steps: StepEnergies) -> torch.Tensor:
    log_probs = step_log_probs(steps).gather(2, steps.actions.clamp(min=0).unsqueeze(-1))
    return log_probs.squeeze(-1).where(steps.step_mask, 0.0).sum(1)


def energies_along(net, x, labels, order):
    with torch.no_grad():
        return teacher_force(net, x[None], labels[None], orders=torch.tensor([order])).energies[0]


@st.composite
def set_with_swap(draw):
    n = draw(st.integers(3, 8))
    labels = ref.actions_along(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), range(n))
    order = draw(st.permutations(list(range(n))))
    s1, s2 = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True)))
    return torch.tensor(labels), order, s1, s2, draw(st.integers(0, 2**31 - 1))


@given(case=set_with_swap())
def test_energy_invariances(case):
    """Swapping the steps s1 < s2 of two points changes nothing before s1 (the unassigned
    points are permuted) and, after s2, permutes at most the candidates (same partition of the
    assigned points, clusters possibly relabelled); a swap inside a cluster changes nothing."""
    labels, order, s1, s2 = case[:4]
    net = NETS[torch.float64]
    x = 2 * torch.randn(len(order), 2, generator=torch.Generator().manual_seed(case[4]),
                        dtype=torch.float64)
    swapped = list(order)
    swapped[s1], swapped[s2] = swapped[s2], swapped[s1]
    before, after = energies_along(net, x, labels, order), energies_along(net, x, labels, swapped)
    assert torch.allclose(before[:s1], after[:s1], rtol=1e-9, atol=1e-9)
    for t in range(s2 + 1, len(order)):
        assert torch.allclose(before[t].sort().values, after[t].sort().values, rtol=1e-9, atol=1e-9)
    if labels[order[s1]] == labels[order[s2]]:
        assert torch.allclose(before[s2 + 1:], after[s2 + 1:], rtol=1e-9, atol=1e-9)
    actions = ref.actions_along(labels, order)
    final = before[-1, actions[-1]]
    assert math.isclose(after[-1, ref.actions_along(labels, swapped)[-1]].item(), final.item(),
                        rel_tol=1e-9, abs_tol=1e-9)


def test_log_prob_orders_matches_single_calls():
    net = NETS[torch.float64]
    gen = torch.Generator().manual_seed(7)
    x = 2 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 1])
    orders = torch.stack([torch.randperm(6, generator=gen) for _ in range(7)])
    with torch.no_grad():
        single = torch.cat([log_prob(net, x[None], labels[None], orders=o[None]) for o in orders])
        for chunk in (None, 1, 3):
            batched = log_prob_orders(net, x, labels, orders, chunk_size=chunk)
            assert torch.allclose(batched, single, rtol=1e-12, atol=1e-12)


def test_sdpp_matches_direct_float64():
    net = NETS[torch.float64]
    x = 2 * torch.randn(5, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 1])
    with torch.no_grad():
        result = sdpp(net, x, labels, num_orders=40, generator=torch.Generator().manual_seed(1))
        direct = [log_prob(net, x[None], labels[None], orders=o[None]).item()
                  for o in result.orders]
    probs = np.exp(np.array(direct))
    assert len(set(map(tuple, result.orders.tolist()))) > 20
    assert np.allclose(result.log_probs.numpy(), direct, rtol=1e-12, atol=1e-12)
    assert math.isclose(result.value.item(), probs.std() / probs.mean(), rel_tol=1e-9)


def test_sdpp_does_not_underflow_for_large_sets():
    net = NETS[torch.float32]
    gen = torch.Generator().manual_seed(9)
    x = 3 * torch.randn(120, 2, generator=gen)
    labels = ref.actions_along(torch.randint(0, 6, (120,), generator=gen), range(120))
    with torch.no_grad():
        result = sdpp(net, x, torch.tensor(labels), num_orders=16, generator=3)
    assert result.log_probs.max() < -100  # exp() of these underflows in float32
    logs = result.log_probs.double().numpy()
    probs = [math.exp(value - logs.max()) for value in logs]  # float64, rescaled by hand
    expected = np.std(probs) / np.mean(probs)
    assert math.isclose(result.value.item(), expected, rel_tol=1e-5)
    assert 0 < result.value.item() <= math.sqrt(15) * (1 + 1e-6)
    again = sdpp(net, x, torch.tensor(labels), num_orders=16, generator=3)
    assert torch.equal(result.orders, again.orders)  # same seed, same orders


def test_precomputed_encodings_and_bf16():
    net = NETS[torch.float32]
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2], [0, 1]], [[3, 1, 0, 2], [0, 1]], 11,
                                       torch.float32)
    with torch.no_grad():
        plain = teacher_force(net, x, labels, mask, orders)
        reused = teacher_force(net, encode_points(net, x), labels, mask, orders)
        low = teacher_force(net, x, labels, mask, orders, bf16=True)
    assert torch.equal(plain.energies, reused.energies)
    assert low.energies.dtype == torch.float32
    finite = plain.candidate_mask
    assert torch.equal(torch.isinf(low.energies), ~finite)
    scale = plain.energies[finite].abs().max()
    assert (low.energies[finite] - plain.energies[finite]).abs().max() < 0.05 * scale


def test_gradients_reach_every_parameter_through_padding():
    net = ref.make_net(4, torch.float64)
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1], [0, 0], [0]],
                                           [[4, 0, 2, 1, 3], [1, 0], [0]],
                                       12, torch.float64)
    steps = teacher_force(net, x, labels, mask, orders)
    log_probs = step_log_probs(steps)
    loss = -log_probs.gather(2, steps.actions.clamp(min=0)[..., None]).where(
        steps.step_mask[..., None], 0.0).sum()
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def _bad_inputs():
    x = torch.randn(2, 3, 2)
    labels = torch.tensor([[0, 1, 0], [0, 0, -1]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    nan_x, inf_x = x.clone(), x.clone()
    nan_x[0, 1, 0] = math.nan
    inf_x[1, 2, 1] = math.inf  # at padding: padding must be finite too
    return [
        ("point shape", dict(points=torch.randn(2, 3, 5), labels=labels, mask=mask)),
        ("no batch dim", dict(points=torch.randn(3, 2), labels=labels[0], mask=None)),
        ("empty set", dict(points=torch.randn(2, 0, 2), labels=labels[:, :0], mask=None)),
        ("NaN", dict(points=nan_x, labels=labels, mask=mask)),
        ("inf", dict(points=inf_x, labels=labels, mask=mask)),
        ("not canonical", dict(points=x, labels=torch.tensor([[1, 0, 0], [0, 0, -1]]), mask=mask)),
        ("skips a label", dict(points=x, labels=torch.tensor([[0, 2, 1], [0, 0, -1]]), mask=mask)),
        ("float labels", dict(points=x, labels=labels.double(), mask=mask)),
        ("labels shape", dict(points=x, labels=labels[:, :2], mask=mask)),
        ("mask not prefix", dict(points=x, labels=labels, mask=torch.tensor([[True, False, True]] * 2))),
        ("empty row", dict(points=x, labels=labels, mask=torch.tensor([[True] * 3, [False] * 3]))),
        ("order repeats", dict(points=x, labels=labels, mask=mask, orders=[[0, 0, 1], [0, 1, 2]])),
        ("order out of range", dict(points=x, labels=labels, mask=mask, orders=[[0, 1, 2], [0, 2, 1]])),
        ("order negative", dict(points=x, labels=labels, mask=mask, orders=[[0, 1, -1], [0, 1, 0]])),
        ("float orders", dict(points=x, labels=labels, mask=mask, orders=torch.zeros(2, 3))),
        ("float64 x, float32 net", dict(points=x.double(), labels=labels, mask=mask)),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda case: case[0])
def test_bad_inputs_raise_value_error(case):
    with pytest.raises(ValueError):
        teacher_force(NETS[torch.float32], **case[1])


def test_bad_inputs_of_the_one_set_functions():
    net = NETS[torch.float64]
    x = torch.randn(4, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="orders"):
        log_prob_orders(net, x, labels, torch.tensor([[0, 1, 2, 2]]))
    with pytest.raises(ValueError, match="orders"):
        log_prob_orders(net, x, labels, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        log_prob_orders(net, x, labels[:3], torch.arange(4)[None])
    with pytest.raises(ValueError, match="chunk_size"):
        log_prob_orders(net, x, labels, torch.arange(4)[None], chunk_size=0)
    with pytest.raises(ValueError, match="num_orders"):
        sdpp(net, x, labels, num_orders=0)
    with pytest.raises(ValueError, match="generator"):
        sdpp(net, x, labels, generator="seed")
    with pytest.raises(ValueError, match="points are required"):
        teacher_force(net, None, labels[None])
    with pytest.raises(ValueError, match="canonical"):
        partition_energy(net, x[None], torch.tensor([[1, 0, 0, 1]]))
    with pytest.raises(ValueError, match="mask"):
        partition_energy(net, x[None], labels[None], torch.tensor([[True, False, True, True]]))


def test_agrees_with_sequential_sampling():
    """The log-probabilities that gfncp_pyro.decoding.sample reports for its own samples,
    decoded step by step, equal teacher forcing's for the same partitions and orders."""
    from gfncp_pyro.decoding import sample

    net = NETS[torch.float64]
    gen = torch.Generator().manual_seed(14)
    x, _, mask, orders = ref.to_batch([[0] * 6, [0] * 4, [0]], [list(range(6)), [2, 0, 3, 1], [0]],
                                      15, torch.float64)
    orders[0] = torch.randperm(6, generator=gen)
    with torch.no_grad():
        labels, sampled = sample(net, x, num_samples=5, mask=mask, orders=orders, generator=0)
        batch, num, n_max = labels.shape
        forced = log_prob(net, x.repeat_interleave(num, 0), labels.reshape(-1, n_max),
                          mask.repeat_interleave(num, 0), orders.repeat_interleave(num, 0))
    assert torch.allclose(forced.reshape(batch, num), sampled, rtol=1e-10, atol=1e-10)
