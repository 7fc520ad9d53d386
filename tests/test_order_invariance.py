"""Order invariance (the product's third promise), as hypothesis properties.

(a) An oracle energy built from the exact prefix marginals, E[c_{1:n}] = -log p(c_{1:n} | x),
    has zero MC residual (Eq. 24, consistent parametrisation) along every order, and its
    trajectory probabilities (Eq. 30) equal the exact posterior for every order;
(b) the exact posterior is equivariant under permutations of the data (also in test_exact.py);
(c) the energy network's symmetries: see test_policy.py.
"""

import json
import math
import statistics
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gfncp_pyro import losses, metrics, policy
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import canonicalize


def oracle_step_energies(exact, labels: torch.Tensor, order: torch.Tensor) -> policy.StepEnergies:
    """StepEnergies of one trajectory whose energies are exact negative log prefix marginals."""
    n = labels.shape[0]
    all_actions = canonicalize(exact.labels[:, order])  # every partition, read along the order
    actions = canonicalize(labels[order])
    energies = torch.full((1, n, n + 1), math.inf, dtype=torch.float64)
    mask = torch.zeros((1, n, n + 1), dtype=torch.bool)
    for t in range(n):
        k_open = int(actions[:t].max()) + 1 if t else 0
        for k in range(k_open + 1):
            prefix = torch.cat([actions[:t], torch.tensor([k])])
            match = (all_actions[:, : t + 1] == prefix).all(1)
            energies[0, t, k] = -torch.logsumexp(exact.log_posterior[match], 0)
            mask[0, t, k] = True
    return policy.StepEnergies(energies, mask, actions[None], torch.ones((1, n), dtype=torch.bool))


@settings(max_examples=15)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_oracle_energy_is_consistent_and_order_invariant(n, seed):
    gen = torch.Generator().manual_seed(seed)
    mixture = CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2)
    batch = mixture.sample_batch(torch.tensor([n]), gen, dtype=torch.float64)
    exact = exact_posterior(batch.x[0], 1.0, likelihood=mixture.likelihood)
    pick = int(torch.randint(0, exact.labels.shape[0], (1,), generator=gen))
    labels = exact.labels[pick]
    log_probs = []
    for _ in range(3):
        order = torch.randperm(n, generator=gen)
        steps = oracle_step_energies(exact, labels, order)
        assert float(losses.marginal_consistency(steps, "consistent")) < 1e-20
        log_probs.append(float(policy.trajectory_log_prob(steps)))
    for value in log_probs:
        assert abs(value - float(exact.log_posterior[pick])) < 1e-9


# (d) The shipped GFNCP model: probabilities of the same partition along random orders agree
# within the tolerance its validation report measured (validation/results, 100 data sets of N=8,
# SDPP of the exact MAP partition over 500 orders). Per set, SDPP over 100 orders has a heavy tail
# (measured: 1.03 at seed 999999, where NCP has 1.10, against a report maximum of 0.59), so the
# per-set tolerance is 3 x the report's largest value and the examples are derandomised; the mean
# over 20 sets is the sharper check. NCP's values are printed beside GFNCP's.
REPORT = Path(__file__).resolve().parents[1] / "validation" / "results" / "exact_N8.json"


def _shipped_sdpp(objective: str, seed: int, orders: int = 100) -> float:
    from gfncp_pyro.pretrained import load_pretrained

    net = load_pretrained("mog2d-small", objective)
    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    x = mixture.sample_batch(torch.tensor([8]), torch.Generator().manual_seed(seed), dtype=torch.float64).x[0]
    exact = exact_posterior(x, 1.0, likelihood=mixture.likelihood)
    map_labels = exact.labels[int(exact.log_posterior.argmax())]
    with torch.no_grad():
        return float(metrics.sdpp(net, x.float(), map_labels, orders, generator=seed).value)


def _report_sdpp() -> list[float]:
    return [row["sdpp_map"] for row in json.loads(REPORT.read_text())["per_dataset"]["GFNCP"]]


@settings(max_examples=8, derandomize=True)
@given(seed=st.integers(0, 10**6))
def test_shipped_gfncp_probabilities_agree_across_orders_within_the_reported_tolerance(seed):
    tolerance = 3.0 * max(_report_sdpp())
    gfncp, ncp = _shipped_sdpp("gfncp", seed), _shipped_sdpp("ncp", seed)
    print(f"seed {seed}: SDPP GFNCP {gfncp:.3f} (tolerance {tolerance:.3f}), NCP {ncp:.3f}")
    assert gfncp <= tolerance


def test_shipped_gfncp_mean_sdpp_matches_its_report(capsys):
    values = [_shipped_sdpp("gfncp", seed) for seed in range(20)]
    ncp = [_shipped_sdpp("ncp", seed) for seed in range(20)]
    reported = _report_sdpp()
    mean = sum(reported) / len(reported)
    spread = statistics.stdev(reported)
    with capsys.disabled():
        print(f"\nshipped models, 20 sets of N=8, SDPP of the exact MAP partition over 100 orders: "
              f"GFNCP mean {statistics.fmean(values):.3f} (report {mean:.3f} +- {spread:.3f}), "
              f"NCP mean {statistics.fmean(ncp):.3f}")
    assert statistics.fmean(values) <= mean + 3 * spread / math.sqrt(len(values))
