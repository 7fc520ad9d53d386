"""Objective objects (gfncp_pyro.objectives), the offset flow and trajectory balance.

- The objects equal the formula the trainer used before they existed (Eq. 29 with MC, reg and
  CD/NLL written out from the loss functions) on fixed batches.
- The offset flow's per-state offsets and residuals match slow loops; the offset never changes
  the policy; trajectory balance is the square of the summed residuals.
- The chosen objective's balance term is zero at an oracle energy built from exact prefix
  marginals with an arbitrary label-free offset, and its likelihood term is minimal there.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gfncp_pyro import decoding, flows, losses, policy
from gfncp_pyro.config import PAPER_OBJECTIVE, TrainConfig, preset
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.objectives import GFNCPObjective, NCPObjective, first_state_energy
from gfncp_pyro.train import draw_batch, iteration_generator
from test_order_invariance import oracle_step_energies

NET = ref.make_net(5, torch.float64, flow_head=True)


def _batch(config, seed=3):
    return draw_batch(config, iteration_generator(seed, 0, 0), torch.device("cpu"), dtype=torch.float64,
                      batch_size=6)


def _previous_formula(net, config, batch, generator):
    """The GFNCP objective as train.batch_loss wrote it before the objective objects."""
    encodings = policy.encode_points(net, batch.x)
    steps = policy.teacher_force(net, encodings, batch.labels, batch.mask, batch.orders)
    mc = losses.marginal_consistency(steps, config.objective.flow)
    energy = policy.partition_energy(net, encodings, batch.labels, batch.mask)
    loss = (mc + config.objective.delta * losses.energy_regularizer(energy)).mean()
    keep = batch.is_data
    if config.objective.reward == "nll":
        return loss + config.objective.lambda_cd * losses.ncp_nll(steps)[keep].sum() / keep.numel()
    x, mask = batch.x[keep], batch.mask[keep]
    width = int(mask.sum(1).max())
    x, mask = x[:, :width], mask[:, :width]
    sub = policy.Encodings(encodings.h[keep][:, :width], encodings.u[keep][:, :width])
    sample, _ = decoding.sample(net, x, 1, mask=mask, orders=batch.orders[keep][:, :width], generator=generator,
                                encodings=sub)
    energy_sample = policy.partition_energy(net, sub, sample[:, 0], mask)
    return loss + config.objective.lambda_cd * (energy[keep] - energy_sample).sum() / keep.numel()


@pytest.mark.parametrize("flow,reward", [("paper", "cd"), ("consistent", "nll"), ("consistent", "cd")])
def test_gfncp_objective_equals_the_previous_formula(flow, reward):
    config = preset("mog2d-small", objective=PAPER_OBJECTIVE, flow=flow, reward=reward, beta=0.5, n_max=9)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    assert bool(batch.is_data.any()) and not bool(batch.is_data.all())
    objective = config.objective
    assert isinstance(objective, GFNCPObjective)
    loss, parts = objective.loss(net, batch, torch.Generator().manual_seed(7))
    expected = _previous_formula(net, config, batch, torch.Generator().manual_seed(7))
    assert abs(float(loss.detach()) - float(expected.detach())) < 1e-9
    assert set(parts) >= {"mc", "reg", "cd" if reward == "cd" else "nll"}


def test_ncp_objective_is_the_mean_nll():
    config = preset("mog2d-small", objective="ncp", n_max=9)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    loss, parts = config.objective.loss(net, batch, torch.Generator())
    expected = -policy.log_prob(net, batch.x, batch.labels, batch.mask, batch.orders).mean()
    assert isinstance(config.objective, NCPObjective)
    assert abs(float(loss.detach()) - float(expected.detach())) < 1e-9 and abs(parts["nll"] - float(expected.detach())) < 1e-9


def test_ncp_over_several_orders_is_the_mean_nll_over_them():
    from gfncp_pyro.data import random_orders

    config = preset("mog2d-small", objective="ncp", num_orders=3, n_max=9)
    assert config.objective == NCPObjective(num_orders=3)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    loss, parts = config.objective.loss(net, batch, torch.Generator().manual_seed(5))
    generator, lengths = torch.Generator().manual_seed(5), batch.mask.sum(1)
    orders = [batch.orders] + [random_orders(lengths, generator) for _ in range(2)]
    with torch.no_grad():
        per_order = [-policy.log_prob(net, batch.x, batch.labels, batch.mask, o) for o in orders]
    expected = torch.stack(per_order).mean(0).mean()
    assert abs(float(loss.detach()) - float(expected)) < 1e-9 and abs(parts["nll"] - float(expected)) < 1e-9
    assert abs(float(per_order[0].mean()) - float(expected)) > 1e-6  # the other orders count
    with pytest.raises(ValueError, match="num_orders must be an integer >= 1"):
        NCPObjective(num_orders=0)
    with pytest.raises(ValueError, match="num_orders do\\(es\\) not apply to the gfncp objective"):
        preset("mog2d-small", num_orders=2)


def test_balance_weight_schedule():
    objective = GFNCPObjective(mc_weight=2.0, mc_warmup=10, mc_ramp=4)
    assert [objective.balance_weight(s) for s in (0, 9, 10, 11, 13, 100)] == [0.0, 0.0, 0.5, 1.0, 2.0, 2.0]
    assert objective.balance_weight(None) == 2.0
    assert GFNCPObjective(mc_warmup=3, mc_ramp=0, mc_weight=1.0).balance_weight(3) == 1.0


def test_warmup_objective_is_the_likelihood_alone():
    config = preset("mog2d-small", flow="offset", reward="nll", lambda_cd=1.0, gauge="none", delta=0.0, beta=1.0,
                    mc_warmup=5, mc_ramp=0, mc_weight=1.0, n_max=9, balance="flow")
    net = ref.make_net(2, torch.float64, flow_head=True)
    batch = _batch(config)
    objective = config.objective
    loss, _ = objective.loss(net, batch, torch.Generator(), step=0)
    nll = -policy.log_prob(net, batch.x, batch.labels, batch.mask, batch.orders).mean()
    assert abs(float(loss.detach()) - float(nll.detach())) < 1e-9
    full, parts = objective.loss(net, batch, torch.Generator(), step=5)
    assert abs(float(full.detach()) - float(nll.detach()) - parts["mc"]) < 1e-9


@torch.no_grad()
def slow_offsets(net, x, order):
    """``b_t = b(sum of u over rho_0..rho_t, sum of u over the rest)`` with Python loops."""
    n = x.shape[0]
    out = []
    for t in range(n):
        assigned = sum((net.u(x[order[s]]) for s in range(t + 1)), torch.zeros(net.config.h_dim, dtype=x.dtype))
        rest = sum((net.u(x[order[s]]) for s in range(t + 1, n)), torch.zeros(net.config.h_dim, dtype=x.dtype))
        out.append(float(net.log_flow_offset(assigned, rest)))
    return out


@given(batch=ref.padded_batches())
@torch.no_grad()
def test_offsets_and_offset_residuals_match_slow_loops(batch):
    x, labels, mask, orders = ref.to_batch(*batch, torch.float64)
    with torch.no_grad():
        enc = policy.encode_points(NET, x)
        offsets = flows.state_log_flow_offsets(NET, enc, mask, orders)
        steps = policy.teacher_force(NET, enc, labels, mask, orders)
        residuals = losses.marginal_consistency_residuals(steps, "offset", offsets)
        tb = losses.trajectory_balance(steps, "offset", offsets)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        order = orders[b, :n].tolist()
        b_slow = slow_offsets(NET, x[b, :n], order)
        assert torch.allclose(offsets[b, :n], torch.tensor(b_slow, dtype=torch.float64), atol=1e-9)
        assert torch.all(offsets[b, n:] == 0)
        actions, rows = ref.step_energies(NET, x[b, :n], labels[b, :n], order)
        expected = [0.0]
        for t in range(1, n):
            children = math.log(math.fsum(math.exp(-float(e)) for e in rows[t]))
            expected.append(float(rows[t - 1][actions[t - 1]]) + children + b_slow[t] - b_slow[t - 1])
        assert torch.allclose(residuals[b, :n], torch.tensor(expected, dtype=torch.float64), atol=1e-9)
        assert abs(float(tb[b]) - math.fsum(expected) ** 2) < 1e-8
        # Telescoping: sum of residuals = log F(s_N) - log q - log F(s_1) up to sign.
        log_q = ref.log_prob(actions, rows)
        log_f_first = -float(rows[0][0]) + b_slow[0]
        log_f_last = -float(rows[n - 1][actions[n - 1]]) + b_slow[n - 1]
        assert abs(math.fsum(expected) - (log_f_last - log_q - log_f_first)) < 1e-8


def test_offset_head_never_changes_policy_or_reward():
    """Networks that differ only in the offset head have identical policies and rewards."""
    other = ref.make_net(5, torch.float64, flow_head=True)
    with torch.no_grad():
        for p in other.b_net.parameters():
            p.add_(torch.randn_like(p))
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1]], [[4, 2, 0, 1, 3]], 11, torch.float64)
    with torch.no_grad():
        a = policy.teacher_force(NET, x, labels, mask, orders)
        b = policy.teacher_force(other, x, labels, mask, orders)
        assert torch.equal(a.energies, b.energies)
        off_a = flows.state_log_flow_offsets(NET, policy.encode_points(NET, x), mask, orders)
        off_b = flows.state_log_flow_offsets(other, policy.encode_points(other, x), mask, orders)
    assert not torch.allclose(off_a, off_b)


def test_offset_flow_needs_offsets_and_a_head():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0]], [[0, 1, 2]], 1, torch.float64)
    steps = policy.teacher_force(NET, x, labels, mask, orders)
    with pytest.raises(ValueError, match="offsets="):
        losses.marginal_consistency(steps, "offset")
    with pytest.raises(ValueError, match="flow=.offset. or .state. only"):
        losses.marginal_consistency(steps, "consistent", torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="no log-flow offset head"):
        ref.make_net(1).log_flow_offset(torch.zeros(8), torch.zeros(8))
    assert preset("mog2d-small", flow="offset").net.flow_head


def test_first_state_energy_is_the_first_teacher_forced_energy():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 1], [0, 0]], [[2, 0, 3, 1], [1, 0]], 4, torch.float64)
    enc = policy.encode_points(NET, x)
    steps = policy.teacher_force(NET, enc, labels, mask, orders)
    assert torch.allclose(first_state_energy(NET, enc, orders, mask), losses.first_energy(steps), atol=1e-10)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_objective_is_zero_at_the_oracle_energy_with_any_label_free_offset(n, seed):
    """Oracle energies E[c_{1:t}] = -log p(c_{1:t} | x) + c_t with an arbitrary constant c_t per
    step (what the offset head absorbs, b_t = c_t): the offset flow's MC residuals and the
    trajectory balance vanish along every order, and the NLL is the exact -log p(c | x)."""
    gen = torch.Generator().manual_seed(seed)
    mixture = CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2)
    batch = mixture.sample_batch(torch.tensor([n]), gen, dtype=torch.float64)
    exact = exact_posterior(batch.x[0], 1.0, likelihood=mixture.likelihood)
    pick = int(torch.randint(0, exact.labels.shape[0], (1,), generator=gen))
    for _ in range(3):
        order = torch.randperm(n, generator=gen)
        steps = oracle_step_energies(exact, exact.labels[pick], order)
        shift = 5.0 * torch.randn((1, n), generator=gen, dtype=torch.float64)
        shifted = steps._replace(energies=steps.energies + shift.unsqueeze(-1))
        assert float(losses.marginal_consistency(shifted, "offset", shift)) < 1e-18
        assert float(losses.trajectory_balance(shifted, "offset", shift)) < 1e-18
        assert float(losses.marginal_consistency(shifted, "consistent")) > 1e-6  # without the offset: not zero
        nll = float(losses.ncp_nll(shifted))
        assert abs(nll + float(exact.log_posterior[pick])) < 1e-9


def test_policy_exploration_replaces_only_the_exploration_labels():
    config = preset("mog2d-small", flow="offset", reward="nll", explore="policy", beta=0.5, n_max=9, balance="flow")
    net = ref.make_net(2, torch.float64, flow_head=True)
    batch = _batch(config)
    objective = config.objective
    enc = policy.encode_points(net, batch.x)
    labels = objective._exploration_labels(net, batch, enc, torch.Generator().manual_seed(0))
    keep = batch.is_data
    assert torch.equal(labels[keep], batch.labels[keep])
    from gfncp_pyro.partitions import is_canonical

    assert bool(is_canonical(labels, batch.mask).all())
    loss, _ = objective.loss(net, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_trainer_logs_the_panel_and_selects_best_by_it(tmp_path):
    from gfncp_pyro.train import Trainer

    config = preset("mog2d-small", flow="offset", reward="nll", lambda_cd=1.0, gauge="none", delta=0.0,
                    iterations=4, val_every=2, val_sets=8, batch_size=4, n_max=6, panel_sets=3,
                    select_by="panel_tv", balance="flow")
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.fit()
    import json

    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    panel = [r for r in log if "panel_tv" in r]
    assert [r["step"] for r in panel] == [2, 4]
    assert all(0 <= r["panel_tv"] <= 1 and r["panel_entropy_q"] > 0 for r in panel)
    assert trainer.best_val == min(r["panel_tv"] for r in panel)
    assert trainer.net.training  # the panel scored a copy


def test_config_refuses_bad_objective_fields():
    for bad in (dict(gauge="mean"), dict(balance="sub"), dict(explore="beam"), dict(mc_warmup=-1),
                dict(select_by="panel_tv", panel_sets=0), dict(flow="paper", balance="trajectory"),
                dict(reward="cd"), dict(mc_steps=4), dict(balance_target="min"),
                dict(panel_n=12, panel_sets=1), dict(mc_weight=-1.0)):
        with pytest.raises(ValueError):
            preset("mog2d-small", **bad)


STATE_NET = ref.make_net(8, torch.float64, state_head=True)


@torch.no_grad()
def slow_parent_offsets(net, x, labels, order):
    """``beta_t = beta(f's first layer on [sum_j g(H_j) of the state before step t, U_{t+1}])``, 0 at
    the last step, with loops over steps and clusters."""
    n = x.shape[0]
    actions = ref.actions_along(labels, order)
    out = []
    for t in range(n):
        G = torch.zeros(net.config.g_dim, dtype=x.dtype)
        for j in range(len(set(actions[:t]))):
            H = sum((net.h(x[order[s]]) for s in range(t) if actions[s] == j), torch.zeros(net.config.h_dim,
                                                                                            dtype=x.dtype))
            G = G + net.g(H)
        U = sum((net.u(x[order[s]]) for s in range(t + 1, n)), torch.zeros(net.config.h_dim, dtype=x.dtype))
        features = net.f_net[0](torch.cat([G, U]))
        out.append(float(net.state_log_flow_offset(features)) if t < n - 1 else 0.0)
    return out


@given(batch=ref.padded_batches())
@torch.no_grad()
def test_parent_offsets_match_a_slow_loop_and_keep_the_policy(batch):
    x, labels, mask, orders = ref.to_batch(*batch, torch.float64)
    steps = policy.teacher_force(STATE_NET, x, labels, mask, orders)
    beta = flows.parent_log_flow_offsets(STATE_NET, steps)
    residuals = losses.marginal_consistency_residuals(steps, "state", beta)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        order = orders[b, :n].tolist()
        expected = slow_parent_offsets(STATE_NET, x[b, :n], labels[b, :n].tolist(), order)
        assert torch.allclose(beta[b, :n], torch.tensor(expected, dtype=torch.float64), atol=1e-9)
        assert torch.all(beta[b, n:] == 0)
        actions, rows = ref.step_energies(STATE_NET, x[b, :n], labels[b, :n], order)
        slow = [0.0] + [float(rows[t - 1][actions[t - 1]]) + math.log(math.fsum(math.exp(-float(e)) for e in rows[t]))
                        + expected[t] - expected[t - 1] for t in range(1, n)]
        assert torch.allclose(residuals[b, :n], torch.tensor(slow, dtype=torch.float64), atol=1e-9)
    # A network with the same energy but another beta head: the same policy (energies).
    other = ref.make_net(8, torch.float64, state_head=True)
    for p in other.beta_net.parameters():
        p.add_(1.0)
    assert torch.equal(policy.teacher_force(other, x, labels, mask, orders).energies, steps.energies)


def test_parent_offsets_depend_on_the_clusters_of_the_parent_state():
    """Two trajectories that reach different parent partitions of the same points get different
    offsets (unlike the label-free head), the same at the first step."""
    x, labels, mask, orders = ref.to_batch([[0, 0, 1, 1], [0, 1, 0, 1]], [[0, 1, 2, 3], [0, 1, 2, 3]], 9,
                                           torch.float64)
    x[1] = x[0]
    with torch.no_grad():
        beta = flows.parent_log_flow_offsets(STATE_NET, policy.teacher_force(STATE_NET, x, labels, mask, orders))
    assert abs(float(beta[0, 0] - beta[1, 0])) < 1e-12 and abs(float(beta[0, 1] - beta[1, 1])) < 1e-12
    assert abs(float(beta[0, 2] - beta[1, 2])) > 1e-6  # parents {0,1} vs {0},{1}
    assert float(beta[0, 3]) == 0.0


def test_state_objective_runs_and_needs_its_head():
    config = preset("mog2d-small", flow="state", reward="nll", gauge="none", delta=0.0, n_max=7, balance="flow")
    assert config.net.state_head and not config.net.flow_head
    net = ref.make_net(2, torch.float64, state_head=True)
    loss, parts = config.objective.loss(net, _batch(config), torch.Generator())
    assert torch.isfinite(loss) and parts["mc"] >= 0
    loss.backward()
    assert net.beta_net[0].weight.grad is not None and float(net.beta_net[0].weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="per-state log-flow offset head"):
        ref.make_net(1).state_log_flow_offset(torch.zeros(16))


def test_normalizer_gauge_matches_a_loop_and_ignores_the_last_step():
    x, labels, mask, orders = ref.to_batch([[0, 1, 0, 2, 1], [0, 0], [0]], [[4, 2, 0, 1, 3], [1, 0], [0]], 3,
                                           torch.float64)
    with torch.no_grad():
        steps = policy.teacher_force(NET, x, labels, mask, orders)
        gauge = losses.normalizer_gauge(steps)
    for b, n in enumerate(mask.sum(1).tolist()):
        _, rows = ref.step_energies(NET, x[b, :n], labels[b, :n], orders[b, :n].tolist())
        values = [math.log(math.fsum(math.exp(-float(e)) for e in rows[t].detach())) ** 2 for t in range(n - 1)]
        expected = math.fsum(values) / len(values) if values else 0.0
        assert abs(float(gauge[b]) - expected) < 1e-9


def test_trajectory_variance_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    log_q, energy = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen,
                                                                                       dtype=torch.float64)
    import statistics

    got = losses.trajectory_variance(log_q, energy)
    for b in range(5):
        assert abs(float(got[b]) - statistics.pvariance([float(log_q[i, b] + energy[i, b]) for i in range(3)])) < 1e-12
    with pytest.raises(ValueError, match="T >= 2"):
        losses.trajectory_variance(log_q[:1], energy[:1])


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_variance_balance_is_zero_at_the_oracle_and_not_elsewhere(n, seed):
    """The oracle energy (exact prefix marginals, E[c_{1:N}] = -log p(c | x) + any constant):
    log q + E is the same for every partition and order, so the variance balance is 0; a
    perturbed last step breaks it."""
    gen = torch.Generator().manual_seed(seed)
    mixture = CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2)
    batch = mixture.sample_batch(torch.tensor([n]), gen, dtype=torch.float64)
    exact = exact_posterior(batch.x[0], 1.0, likelihood=mixture.likelihood)
    log_q, energy, bad = [], [], []
    for _ in range(4):
        pick = int(torch.randint(0, exact.labels.shape[0], (1,), generator=gen))
        steps = oracle_step_energies(exact, exact.labels[pick], torch.randperm(n, generator=gen))
        shifted = steps._replace(energies=steps.energies + 3.0)  # a common constant: same policy
        log_q.append(policy.trajectory_log_prob(shifted))
        energy.append(losses.final_energy(shifted))
        noisy = shifted.energies.clone()
        noisy[0, -1] += torch.randn(noisy.shape[-1], generator=gen, dtype=torch.float64)
        bad.append(policy.trajectory_log_prob(shifted._replace(energies=noisy)) + losses.final_energy(shifted))
    assert float(losses.trajectory_variance(torch.stack(log_q), torch.stack(energy))) < 1e-18
    zeros = torch.zeros(4, 1, dtype=torch.float64)
    assert float(losses.trajectory_variance(torch.stack(bad), zeros)) > 1e-8


def test_variance_objective_averages_the_nll_over_orders_and_trains():
    config = preset("mog2d-small", balance="variance", balance_orders=3, balance_samples=1, reward="nll",
                    gauge="none", delta=0.0, beta=1.0, n_max=7, lambda_cd=1.0, detach_reward=False)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    objective = config.objective
    loss, parts = objective.loss(net, batch, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss) and parts["mc"] >= 0 and parts["order_var"] >= 0
    # The NLL part: the batch's own order and two more drawn from the generator, averaged.
    from gfncp_pyro.data import random_orders

    gen = torch.Generator().manual_seed(1)
    lengths = batch.mask.sum(1)
    orders = [batch.orders, random_orders(lengths, gen), random_orders(lengths, gen)]
    with torch.no_grad():
        expected = torch.stack([-policy.log_prob(net, batch.x, batch.labels, batch.mask, o) for o in orders]).mean()
    assert abs(parts["nll"] - float(expected)) < 1e-9
    loss.backward()
    with pytest.raises(ValueError, match="variance"):
        preset("mog2d-small", balance="variance", reward="cd")
    with pytest.raises(ValueError, match="variance"):
        preset("mog2d-small", balance="variance", balance_orders=1, balance_samples=0, reward="nll")


def test_detached_reward_changes_gradients_not_values():
    base = dict(balance="variance", balance_orders=2, balance_samples=2, reward="nll", gauge="none", delta=0.0,
                beta=1.0, n_max=7, lambda_cd=0.0, mc_warmup=0, mc_ramp=0)
    grads = {}
    for detach in (False, True):
        config = preset("mog2d-small", detach_reward=detach, **base)
        net = ref.make_net(2, torch.float64)
        loss, _ = config.objective.loss(net, _batch(config), torch.Generator().manual_seed(4))
        loss.backward()
        grads[detach] = (float(loss.detach()), torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert abs(grads[False][0] - grads[True][0]) < 1e-12
    assert not torch.allclose(grads[False][1], grads[True][1])


def test_old_checkpoint_configs_keep_their_objective():
    """A config dict saved before the objective fields existed reads as the objective it trained with."""
    import json
    from pathlib import Path

    old = json.loads((Path(__file__).parent / "data" / "config_v1.json").read_text())["mog2d-cpu"]  # paper objective
    for key in ("balance", "balance_orders", "balance_samples", "balance_target", "detach_reward", "gauge",
                "mc_weight", "mc_warmup", "mc_ramp", "mc_calibrate", "explore", "panel_sets", "panel_n", "select_by"):
        old.pop(key)
    objective = TrainConfig.from_dict(old).objective
    assert (objective.balance, objective.gauge, objective.flow, objective.reward) == ("flow", "final", "paper", "cd")
    from gfncp_pyro.pretrained import load_pretrained

    _, shipped = load_pretrained("mog2d-small", "gfncp_consistent", with_config=True)
    assert shipped.objective.balance == "flow" and shipped.objective.flow == "consistent"


def test_max_target_is_the_mean_square_distance_to_the_best_order():
    """balance_target="max" with one partition along R orders: mean over orders of
    (log q_r - max_r' log q_r')^2 (the reward cancels), recomputed from policy.log_prob."""
    from gfncp_pyro.data import random_orders

    config = preset("mog2d-small", balance_target="max", balance_orders=3, beta=1.0, n_max=7, lambda_cd=0.0, gauge="none",
                    balance_samples=0, mc_weight=1.0, mc_warmup=0, mc_ramp=0)
    net = ref.make_net(3, torch.float64)
    batch = _batch(config)
    loss, parts = config.objective.loss(net, batch, torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    lengths = batch.mask.sum(1)
    orders = [batch.orders, random_orders(lengths, gen), random_orders(lengths, gen)]
    with torch.no_grad():
        log_q = torch.stack([policy.log_prob(net, batch.x, batch.labels, batch.mask, o) for o in orders])
    expected = (log_q - log_q.amax(0)).square().mean(0).mean()
    assert abs(float(loss.detach()) - float(expected)) < 1e-9
    assert float(expected) > parts["order_var"]  # the distance to the max exceeds the variance here


def test_order_weight_adds_the_variance_of_log_q_over_the_data_orders():
    """``order_weight`` adds ``w * Var_rho[log q(c | x, rho)]`` over the R orders of the data
    partition, recomputed here with one ``policy.log_prob`` call per order (a slow loop)."""
    config = preset("mog2d-small", n_max=9, beta=1.0)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    base = GFNCPObjective(flow="consistent", balance="variance", balance_orders=3, balance_samples=0,
                          reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", mc_weight=0.5)
    loss0, _ = base.loss(net, batch, torch.Generator().manual_seed(5))
    weighted = GFNCPObjective(**{**base.__dict__, "order_weight": 2.0})
    loss1, parts = weighted.loss(net, batch, torch.Generator().manual_seed(5))
    # the same orders as the objective draws: the batch's own, then R - 1 from the generator
    from gfncp_pyro.data import random_orders

    generator = torch.Generator().manual_seed(5)
    lengths = batch.mask.sum(1)
    orders = [batch.orders] + [random_orders(lengths, generator) for _ in range(2)]
    log_q = torch.stack([policy.log_prob(net, batch.x, batch.labels, batch.mask, o) for o in orders])
    log_q = log_q.detach()
    slow = sum(float(((log_q[:, b] - log_q[:, b].mean()) ** 2).mean()) for b in range(log_q.shape[1])) / log_q.shape[1]
    assert abs(float((loss1 - loss0).detach()) - 2.0 * slow) < 1e-9
    assert abs(parts["order_var"] - slow) < 1e-9
    # not on the balance term's schedule: at full weight during the warm-up too
    warm = GFNCPObjective(**{**weighted.__dict__, "mc_warmup": 10})
    cold = GFNCPObjective(**{**base.__dict__, "mc_warmup": 10})
    a, _ = warm.loss(net, batch, torch.Generator().manual_seed(5), step=3)
    b, _ = cold.loss(net, batch, torch.Generator().manual_seed(5), step=3)
    assert abs(float((a - b).detach()) - 2.0 * slow) < 1e-9
    with pytest.raises(ValueError, match="order_weight"):
        GFNCPObjective(balance="flow", order_weight=1.0)
    with pytest.raises(ValueError, match="order_weight"):
        GFNCPObjective(balance="variance", reward="nll", balance_orders=1, balance_samples=2, order_weight=1.0)


def test_sample_orders_adds_the_order_variance_of_the_policy_samples():
    """``sample_orders = S`` scores each policy sample along S orders (its own, then S - 1 random
    ones) and averages that variance with the data partition's: recomputed with the same draws
    and one ``policy.log_prob`` call per sample and order (a slow loop)."""
    from gfncp_pyro.data import random_orders

    config = preset("mog2d-small", n_max=9, beta=1.0)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    base = GFNCPObjective(balance="variance", balance_orders=2, balance_samples=2, reward="nll", delta=0.0,
                          gauge="none", mc_weight=0.5, order_weight=1.5)
    loss0, parts0 = base.loss(net, batch, torch.Generator().manual_seed(7), background=False)
    scored = GFNCPObjective(**{**base.__dict__, "sample_orders": 3})
    loss1, parts = scored.loss(net, batch, torch.Generator().manual_seed(7), background=False)
    # the objective's draws: R - 1 data orders, the samples' order, the samples, S - 1 more orders
    generator = torch.Generator().manual_seed(7)
    lengths = batch.mask.sum(1)
    random_orders(lengths, generator)
    own = random_orders(lengths, generator)
    with torch.no_grad():
        samples = decoding.sample(net, batch.x, 2, mask=batch.mask, orders=own, generator=generator)[0]
        extra = [random_orders(lengths, generator) for _ in range(2)]
        slow = []
        for j in range(2):
            labels = torch.where(batch.mask, samples[:, j], batch.labels)
            log_q = torch.stack([policy.log_prob(net, batch.x, labels, batch.mask, o) for o in [own] + extra])
            slow.append([float(((log_q[:, b] - log_q[:, b].mean()) ** 2).mean()) for b in range(log_q.shape[1])])
    expected = sum(sum(row) for row in slow) / (2 * len(slow[0]))
    assert abs(parts["sample_order_var"] - expected) < 1e-9
    assert abs(parts["order_var"] - parts0["order_var"]) < 1e-12  # the data term is unchanged
    # loss: order_weight times the mean of the two variances instead of the data one alone
    change = 1.5 * ((parts0["order_var"] + expected) / 2 - parts0["order_var"])
    assert abs(float((loss1 - loss0).detach()) - change) < 1e-9
    for bad in (dict(order_weight=0.0), dict(balance_samples=0, balance_orders=3)):
        with pytest.raises(ValueError, match="sample_orders"):
            GFNCPObjective(**{**scored.__dict__, **bad})


def test_order_target_max_penalises_each_order_gap_to_the_best_order():
    """``order_target="max"``: ``w * mean_r (log q_r - max_r' log q_r')^2`` over the data orders
    (slow loop as above), with no gradient through the max."""
    from gfncp_pyro.data import random_orders

    config = preset("mog2d-small", n_max=9, beta=1.0)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    base = GFNCPObjective(balance="variance", balance_orders=3, balance_samples=0, reward="nll", delta=0.0,
                          gauge="none", mc_weight=0.5)
    loss0, _ = base.loss(net, batch, torch.Generator().manual_seed(5))
    lifted = GFNCPObjective(**{**base.__dict__, "order_weight": 2.0, "order_target": "max"})
    loss1, _ = lifted.loss(net, batch, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    lengths = batch.mask.sum(1)
    orders = [batch.orders] + [random_orders(lengths, generator) for _ in range(2)]
    with torch.no_grad():
        log_q = torch.stack([policy.log_prob(net, batch.x, batch.labels, batch.mask, o) for o in orders])
    slow = sum(float(((log_q[:, b] - log_q[:, b].max()) ** 2).mean()) for b in range(log_q.shape[1])) / log_q.shape[1]
    assert abs(float((loss1 - loss0).detach()) - 2.0 * slow) < 1e-9
    # the best order of each set gets no gradient from the term; the others are pulled up
    log_q = log_q.clone().requires_grad_(True)
    lifted._order_spread(log_q, 0).sum().backward()
    best = log_q.detach().argmax(0)
    assert torch.all(log_q.grad.gather(0, best[None]) == 0)
    assert torch.all(log_q.grad <= 0)
    with pytest.raises(ValueError, match="order_target"):
        GFNCPObjective(**{**lifted.__dict__, "order_weight": 0.0})


def test_energy_level_is_the_mean_absolute_step_log_normaliser_and_is_logged():
    from gfncp_pyro.objectives import energy_level

    config = preset("mog2d-small", n_max=7)
    batch = _batch(config)
    with torch.no_grad():
        steps = policy.teacher_force(NET, batch.x, batch.labels, batch.mask, batch.orders)
    values = []
    for b in range(batch.x.shape[0]):
        for t in range(int(batch.mask[b].sum())):
            candidates = steps.energies[b, t][steps.candidate_mask[b, t]]
            values.append(abs(float(torch.logsumexp(-candidates, 0))))
    assert abs(energy_level(steps, batch.mask) - sum(values) / len(values)) < 1e-9
    generator = torch.Generator().manual_seed(0)
    assert "energy_level" in config.objective.loss(NET, batch, generator, step=10**6)[1]
    assert "energy_level" in preset("mog2d-small", objective="ncp").objective.loss(NET, batch, generator)[1]


def test_ncp_normalizer_gauge_adds_delta_times_the_mean_square_step_log_normaliser():
    config = preset("mog2d-small", objective="ncp", gauge="normalizer", delta=0.25, n_max=7)
    assert config.objective == NCPObjective(gauge="normalizer", delta=0.25)
    net = ref.make_net(2, torch.float64)
    batch = _batch(config)
    loss, parts = config.objective.loss(net, batch, torch.Generator())
    with torch.no_grad():
        steps = policy.teacher_force(net, batch.x, batch.labels, batch.mask, batch.orders)
        nll = -policy.log_prob(net, batch.x, batch.labels, batch.mask, batch.orders)
    penalties = []  # slow loop: steps 0 .. N-2 of each set, logsumexp over its candidates
    for b in range(batch.x.shape[0]):
        n = int(batch.mask[b].sum())
        squares = [float(torch.logsumexp(-steps.energies[b, t][steps.candidate_mask[b, t]], 0)) ** 2
                   for t in range(n - 1)]
        penalties.append(sum(squares) / len(squares) if squares else 0.0)
    expected = float(nll.mean()) + 0.25 * sum(penalties) / len(penalties)
    assert abs(float(loss.detach()) - expected) < 1e-9
    assert abs(parts["reg"] - sum(penalties) / len(penalties)) < 1e-9 and abs(parts["nll"] - float(nll.mean())) < 1e-9
    plain, plain_parts = NCPObjective().loss(net, batch, torch.Generator())
    assert abs(float(plain.detach()) - float(nll.mean())) < 1e-9 and "reg" not in plain_parts
    with pytest.raises(ValueError, match="delta must be a non-negative"):
        NCPObjective(delta=-1.0)
    with pytest.raises(ValueError, match="gauge"):
        NCPObjective(gauge="final")
