"""Nested orders (``GFNCPObjective.order_draw="nested"``): ``prefix_shuffled_orders`` against a
slow loop, and the property the variance term relies on: two nested orders of one partition give
the same policy step for step after the cut, so their log q differ only in the prefix."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro import policy
from gfncp_pyro.config import preset
from gfncp_pyro.data.sets import prefix_shuffled_orders, random_orders
from gfncp_pyro.objectives import GFNCPObjective
from gfncp_pyro.train import draw_batch, iteration_generator


def _slow(orders, lengths, seed):
    """The same draws as prefix_shuffled_orders, one set and one position at a time."""
    generator = torch.Generator().manual_seed(seed)
    batch, n_max = orders.shape
    cut_u = torch.rand(batch, generator=generator, dtype=torch.float64)
    keys = torch.rand((batch, n_max), generator=generator, dtype=torch.float64)
    out = orders.clone()
    for b in range(batch):
        n = int(lengths[b])
        low = min(2, n)
        cut = min(n, low + int(float(cut_u[b]) * (n - low + 1)))
        prefix = sorted(range(cut), key=lambda t: float(keys[b, t]))
        out[b, :cut] = orders[b, prefix]
    return out, cut_u


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_prefix_shuffled_orders_match_a_slow_loop(lengths, seed):
    lengths = torch.tensor(lengths)
    orders = random_orders(lengths, torch.Generator().manual_seed(seed + 1))
    got = prefix_shuffled_orders(orders, lengths, torch.Generator().manual_seed(seed))
    expected, _ = _slow(orders, lengths, seed)
    assert torch.equal(got, expected)
    for b, n in enumerate(lengths.tolist()):  # a permutation of the set's points, padding in place
        assert sorted(got[b, :n].tolist()) == list(range(n))
        assert torch.equal(got[b, n:], orders[b, n:])


def test_cuts_cover_two_to_n():
    lengths = torch.full((4000,), 6)
    orders = random_orders(lengths, torch.Generator().manual_seed(0))
    shuffled = prefix_shuffled_orders(orders, lengths, torch.Generator().manual_seed(1))
    _, cut_u = _slow(orders, lengths, 1)
    cuts = (2 + (cut_u * 5).long()).tolist()
    assert set(cuts) == {2, 3, 4, 5, 6}
    differs_late = (shuffled != orders)[:, 3:].any(1)
    assert bool(differs_late.any()) and not bool(differs_late[torch.tensor(cuts) <= 3].any())


def test_nested_trajectories_agree_step_for_step_after_the_cut():
    net = ref.make_net(3, torch.float64)
    config = preset("mog2d-small", n_min=7, n_max=7)
    batch = draw_batch(config, iteration_generator(2, 0, 0), torch.device("cpu"), dtype=torch.float64, batch_size=5)
    lengths = batch.mask.sum(1)
    seed = 4
    nested = prefix_shuffled_orders(batch.orders, lengths, torch.Generator().manual_seed(seed))
    _, cut_u = _slow(batch.orders, lengths, seed)
    cuts = 2 + (cut_u * 6).long()
    per_step = []
    for orders in (batch.orders, nested):
        steps = policy.teacher_force(net, batch.x, batch.labels, batch.mask, orders)
        per_step.append(-(policy.taken_energies(steps) + policy.step_log_normalizer(steps)))
    after = torch.arange(7).unsqueeze(0) >= cuts.unsqueeze(1)
    assert torch.allclose(per_step[0][after], per_step[1][after], atol=1e-12, rtol=0)
    assert not torch.allclose(per_step[0][~after], per_step[1][~after], atol=1e-6)  # the prefixes differ


def test_the_objective_draws_nested_orders_and_refuses_other_balances():
    config = preset("mog2d-small", n_max=10, order_draw="nested")
    assert config.objective.order_draw == "nested"
    batch = draw_batch(config, iteration_generator(0, 0, 0), torch.device("cpu"), batch_size=4)
    loss, parts = config.objective.loss(ref.make_net(1, torch.float32), batch, torch.Generator().manual_seed(0),
                                        step=10**6)
    assert torch.isfinite(loss) and parts["order_var"] > 0
    import pytest
    with pytest.raises(ValueError, match="order_draw='nested' needs balance='variance'"):
        GFNCPObjective(balance="flow", order_draw="nested")
    with pytest.raises(ValueError, match="order_draw"):
        GFNCPObjective(order_draw="sorted")
