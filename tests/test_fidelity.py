"""The trainer's fidelity panel scores a network exactly as validation.exact does on the same sets."""

import math

import pytest
import torch

import reference as ref
from gfncp_pyro.fidelity import PANEL_SEED, FidelityPanel
from gfncp_pyro.metrics import divergences, entropy
from gfncp_pyro.models import CRPMixture
from validation.compare import compare_one


def test_panel_matches_validation_compare_one_on_the_same_sets():
    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    panel = FidelityPanel(mixture, num_sets=3, n=5, num_orders=2)
    net = ref.make_net(6, torch.float64)
    got = panel.evaluate(net)
    rows = [compare_one(net, x, exact, exact.labels[0], orders, num_importance=20, sdpp_orders=3,
                        generator=torch.Generator().manual_seed(0))
            for x, exact, orders in zip(panel.x, panel.exact, panel.orders)]
    for key, theirs in (("tv", "tv"), ("tv_orders", "tv_orders"), ("reward_tv", "reward_tv"),
                        ("kl_qp", "kl_qp"), ("entropy_q", "entropy_q")):
        expected = sum(r[theirs] for r in rows) / len(rows)
        assert abs(got[key] - expected) < 1e-9, key
    assert abs(got["entropy_p"] - sum(e.entropy for e in panel.exact) / 3) < 1e-9
    assert net.training  # restored


def test_panel_sdpp_is_std_over_mean_of_the_exact_map_along_the_panel_orders():
    from gfncp_pyro.metrics import log_prob_orders

    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    panel = FidelityPanel(mixture, num_sets=3, n=5, num_orders=3)
    net = ref.make_net(6, torch.float64)
    values = []
    for x, exact, orders in zip(panel.x, panel.exact, panel.orders):
        map_labels = exact.labels[exact.log_posterior.argmax()]
        q = log_prob_orders(net, x, map_labels, orders).detach().exp()  # teacher forcing, not the panel's tables
        values.append(float(q.std(correction=0) / q.mean()))
    assert abs(panel.evaluate(net)["sdpp"] - sum(values) / 3) < 1e-9
    assert min(values) > 0  # an untrained net is order dependent: the test can fail


def test_panel_sets_are_seeded_and_distinct_from_the_validation_report():
    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    a, b = FidelityPanel(mixture, 2, 6), FidelityPanel(mixture, 2, 6)
    assert torch.equal(a.x, b.x) and torch.equal(a.orders, b.orders)
    report = mixture.sample_batch(torch.full((2,), 6), torch.Generator().manual_seed(0), dtype=torch.float64).x
    assert not torch.allclose(a.x, report)
    assert PANEL_SEED != 0


def test_tv_and_entropy_helpers():
    log_p = torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    log_q = torch.log(torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    assert divergences(log_p, log_q)["tv"] == pytest.approx(0.5)
    assert entropy(log_p) == pytest.approx(math.log(2))


def test_panel_refuses_bad_sizes():
    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    with pytest.raises(ValueError, match="n must"):
        FidelityPanel(mixture, 2, 11)
    with pytest.raises(ValueError, match="num_sets"):
        FidelityPanel(mixture, 0, 5)
