"""The DAG of Fig. 2: built, verified, drawn; annotated with a policy's probabilities and flows."""

import json
import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_order_invariance import oracle_step_energies

from gfncp_pyro import flows, losses, policy
from gfncp_pyro.loading import resolve_model
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig
from gfncp_pyro.partitions import bell_number, lengths_to_mask, sample_uniform_partitions
from validation.dag import build_dag, main, verify_dag
from validation.dag_policy import (
    all_trajectories,
    annotate_dag,
    check_policy_dag,
    flow_residuals,
    policy_dag,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_dag_counts(n):
    dag = build_dag(n)
    counts = verify_dag(dag, n)
    assert counts["terminal_states"] == bell_number(n)
    assert counts["trajectories"] == math.factorial(n) * bell_number(n)


def test_verify_detects_a_missing_edge():
    dag = build_dag(3)
    edge = next((u, v) for u, v, in dag.edges() if dag.nodes[v]["kind"] == "terminal")
    dag.remove_edge(*edge)
    with pytest.raises(AssertionError, match="trajectories"):
        verify_dag(dag, 3)


def test_dag_cli_writes_png_and_graphml(tmp_path, capsys):
    assert main(["--N", "3", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "dag_N3.png").stat().st_size > 10_000
    graph = nx.read_graphml(tmp_path / "dag_N3.graphml")
    assert graph.number_of_nodes() == 1 + 6 + 12 + 5
    assert "verified" in capsys.readouterr().out
    assert main(["--N", "9", "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------- the DAG of a model's policy

PRETRAINED = "pretrained:mog2d-small:gfncp"


def _tiny_net() -> EnergyNet:
    torch.manual_seed(0)  # test-only initialisation of the network's weights
    config = EnergyNetConfig(h_dim=8, g_dim=8, hidden=8, encoder_layers=2, g_layers=2, f_layers=2)
    return EnergyNet(config).double()


def _slow_flow_residuals(steps: policy.StepEnergies, flow: str):
    """Eq. (20) and the terms of Eq. (24) in [1], state by state with Python floats."""
    batch, n_max = steps.step_mask.shape
    log_flows = [[0.0] * n_max for _ in range(batch)]
    residuals = [[0.0] * n_max for _ in range(batch)]
    for b in range(batch):
        n = int(steps.step_mask[b].sum())
        ehat = []  # ehat[t][k] for the candidates k of step t
        for t in range(n):
            energies = [float(steps.energies[b, t, k]) for k in range(steps.energies.shape[2])
                        if steps.candidate_mask[b, t, k]]
            # Ehat: 0 at the first state and E - min in between; a terminal state's flow is
            # its reward exp(-E) under both flows (Eq. 22 in [1]), also for N = 1.
            if flow == "paper" and t == 0 < n - 1:
                energies = [0.0 for _ in energies]
            elif flow == "paper" and t < n - 1:
                energies = [e - min(energies) for e in energies]
            ehat.append(energies)
        actions = steps.actions[b].tolist()
        for t in range(n):
            log_flows[b][t] = -ehat[t][actions[t]]
            if t < n - 1:
                children = math.fsum(math.exp(-e) for e in ehat[t + 1])
                residuals[b][t] = ehat[t][actions[t]] + math.log(children)
    return torch.tensor(log_flows, dtype=torch.float64), torch.tensor(residuals, dtype=torch.float64)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.sampled_from(["consistent", "paper"]))
def test_flow_residuals_match_a_slow_loop_and_the_mc_loss(seed, flow):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (4,), generator=gen)
    mask = lengths_to_mask(lengths)
    labels = sample_uniform_partitions(lengths, generator=gen)
    orders = torch.stack([torch.cat([torch.randperm(int(n), generator=gen), torch.arange(int(n), 6)])
                          for n in lengths])[:, : mask.shape[1]]
    x = torch.randn(4, mask.shape[1], 2, generator=gen, dtype=torch.float64)
    steps = policy.teacher_force(_tiny_net(), x, labels, mask, orders)
    # Energies of both signs and a wide range, as trained networks produce.
    noise = 30.0 * torch.randn(steps.energies.shape, generator=gen, dtype=torch.float64)
    steps = steps._replace(energies=torch.where(steps.candidate_mask, noise, math.inf))
    log_flows, residuals = flow_residuals(steps, flow)
    slow_flows, slow_residuals = _slow_flow_residuals(steps, flow)
    assert torch.allclose(log_flows, slow_flows, rtol=0, atol=1e-9)
    assert torch.allclose(residuals, slow_residuals, rtol=0, atol=1e-9)
    mc = losses.marginal_consistency(steps, flow)
    assert torch.allclose(residuals.square().sum(1), mc, rtol=1e-12, atol=1e-9)


def test_flow_residuals_reject_bad_input():
    x = torch.randn(1, 3, 2, dtype=torch.float64)
    steps = policy.teacher_force(_tiny_net(), x, torch.tensor([[0, 1, 0]]))
    with pytest.raises(ValueError, match="flow must be one of"):
        flow_residuals(steps, "shifted")
    subset = policy.teacher_force(_tiny_net(), x, torch.tensor([[0, 1, 0]]),
                                  step_subset=torch.tensor([[False, True, False]]))
    with pytest.raises(ValueError, match="every step"):
        flow_residuals(subset, "consistent")


def _pretrained_points(n: int, seed: int = 0):
    net, config = resolve_model(PRETRAINED)
    mixture = config.mixture()
    x = mixture.sample_batch(torch.tensor([n]), generator=torch.Generator().manual_seed(seed)).x[0]
    return net, config, x


def _trajectory_products(dag: nx.DiGraph) -> dict[tuple, float]:
    """``{(order, partition): product of the edge probabilities after s0}`` by path search."""
    products = {}
    for z, data in dag.nodes(data=True):
        if data["kind"] != "terminal":
            continue
        for path in nx.all_simple_paths(dag, "s0", z):
            probs = [dag.edges[u, v]["prob"] for u, v in zip(path[1:], path[2:])]
            order = dag.nodes[path[1]].get("order", (0,))
            products[(order, data["partition"])] = math.prod(probs)
    return products


@torch.no_grad()
def test_pretrained_policy_dag_sums_to_one_and_matches_log_prob():
    net, config, x = _pretrained_points(3)
    dag = build_dag(3)
    summary = policy_dag(dag, net, x, config.objective.flow)
    verify_dag(dag, 3)  # annotating leaves the structure alone
    for node, data in dag.nodes(data=True):
        if data["kind"] != "terminal":
            total = sum(e["prob"] for _, _, e in dag.out_edges(node, data=True))
            assert abs(total - 1.0) < 5e-5  # float32 log-probabilities of energies |E| ~ 400
    products = _trajectory_products(dag)
    assert len(products) == 6 * 5
    for (order, partition), product in products.items():
        log_q = policy.log_prob(net, x[None], torch.tensor([partition]), orders=torch.tensor([order]))
        assert abs(product - math.exp(float(log_q))) < 1e-5
    assert abs(summary["total_probability"] - 1.0) < 1e-5
    # The paper's flow: residuals as the MC loss sees them, along one trajectory.
    steps = policy.teacher_force(net, x[None], torch.tensor([[0, 1, 1]]), orders=torch.tensor([[2, 0, 1]]))
    mc = float(losses.marginal_consistency(steps, config.objective.flow))
    path = ["312:0", "312:01"]
    assert abs(sum(dag.nodes[v]["residual"] ** 2 for v in path) - mc) < 1e-4 * max(1.0, mc)
    # In float64 every check holds to 1e-9.
    exact = policy_dag(build_dag(3), net.double(), x.double(), config.objective.flow)
    assert exact["atol"] < 2e-9
    assert max(exact["prob_sum_error"], exact["trajectory_error"], abs(exact["total_probability"] - 1)) < 1e-9


@torch.no_grad()
def test_check_policy_dag_detects_a_wrong_probability():
    net, config, x = _pretrained_points(3)
    dag = build_dag(3)
    policy_dag(dag, net, x, config.objective.flow)
    orders, labels = all_trajectories(3)
    reference = torch.cat([policy.log_prob_orders(net, x, labels[i], orders[i:i + 6]) for i in range(0, 30, 6)])
    dag.edges["123:01", "13|2"]["prob"] += 0.01
    with pytest.raises(AssertionError, match="sum to"):
        check_policy_dag(dag, orders, labels, reference, 1e-4)
    dag.edges["123:01", "1|2|3"]["prob"] -= 0.01  # sums fixed, two trajectories now wrong
    with pytest.raises(AssertionError, match="trajectory 123:01"):
        check_policy_dag(dag, orders, labels, reference, 1e-4)


def test_policy_dag_rejects_bad_input():
    net = _tiny_net()
    with pytest.raises(ValueError, match="build_dag\\(3\\)"):
        policy_dag(build_dag(2), net, torch.randn(3, 2, dtype=torch.float64), "consistent")
    with pytest.raises(ValueError, match="N=5 points"):
        policy_dag(build_dag(5), net, torch.randn(5, 2, dtype=torch.float64), "consistent")
    with pytest.raises(ValueError, match="one set"):
        policy_dag(build_dag(3), net, torch.randn(1, 3, 2, dtype=torch.float64), "consistent")


@pytest.mark.parametrize("flow", ["consistent", "paper"])
def test_policy_dag_of_one_point(flow):
    net, x = _tiny_net(), torch.randn(1, 2, dtype=torch.float64)
    dag = build_dag(1)
    summary = policy_dag(dag, net, x, flow)
    assert summary["states_with_residual"] == 0 and summary["total_probability"] == 1.0
    reward = float(policy.partition_energy(net, x[None], torch.tensor([[0]])).detach())
    assert abs(dag.nodes["1"]["log_flow"] + reward) < 1e-12  # log F(z) = -E[c_{1:N}] for both flows


def test_oracle_energy_has_zero_consistent_residuals():
    n = 3
    mixture = CRPMixture(alpha=1.0, sigma_mu=4.0, sigma_x=1.0, dim=2)
    x = mixture.sample_batch(torch.tensor([n]), torch.Generator().manual_seed(1), dtype=torch.float64).x[0]
    exact = exact_posterior(x, 1.0, likelihood=mixture.likelihood)
    orders, labels = all_trajectories(n)
    steps = [oracle_step_energies(exact, labels[b], orders[b]) for b in range(orders.shape[0])]
    steps = policy.StepEnergies(*(torch.cat(parts) for parts in list(zip(*steps))[:4]))
    log_posterior = {tuple(c): float(lp) for c, lp in zip(exact.labels.tolist(), exact.log_posterior)}
    reference = torch.tensor([log_posterior[tuple(c)] for c in labels.tolist()], dtype=torch.float64)

    dag = build_dag(n)
    assert annotate_dag(dag, orders, labels, steps, "consistent") < 1e-12
    summary = check_policy_dag(dag, orders, labels, reference, 1e-9)
    assert summary["states_with_residual"] == 6 + 12
    assert summary["max_abs_residual"] < 1e-9
    for name, (q_mean, q_max_dev) in summary["terminals"].items():
        assert q_max_dev < 1e-12
        assert abs(q_mean - math.exp(log_posterior[dag.nodes[name]["partition"]])) < 1e-12
    # log F(s1) = -E[c_1] is the log-evidence of the points' likelihood under the oracle (0 here),
    # and log F(z) = log p(z | x).
    for name, data in dag.nodes(data=True):
        if data["kind"] == "terminal":
            assert abs(data["log_flow"] - log_posterior[data["partition"]]) < 1e-12
    # The paper's min-shifted flow cannot be matched by a stochastic policy (DESIGN.md §4).
    paper = build_dag(n)
    annotate_dag(paper, orders, labels, steps, "paper")
    assert check_policy_dag(paper, orders, labels, reference, 1e-9)["max_abs_residual"] > 1e-2


def test_dag_cli_with_checkpoint_writes_annotated_graphml(tmp_path, capsys):
    assert main(["--checkpoint", PRETRAINED, "--N", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "max |r|" in out and "1|2|3" in out
    graph = nx.read_graphml(tmp_path / "dag_N3_policy.graphml")
    from gfncp_pyro.pretrained import load_pretrained

    _, config = load_pretrained("mog2d-small", "gfncp", with_config=True)
    assert graph.graph["flow"] == config.objective.flow and graph.graph["checkpoint"] == PRETRAINED
    assert all(isinstance(d["prob"], float) for _, _, d in graph.edges(data=True))
    for node, data in graph.nodes(data=True):
        if data["kind"] == "partial":
            assert {"residual", "log_flow"} <= set(data)
        if data["kind"] == "terminal":
            assert {"log_flow", "q_mean", "q_max_dev"} <= set(data) and "residual" not in data
    assert (tmp_path / "dag_N3_policy.png").stat().st_size > 50_000
    # The same points from a file give the same DAG; --flow overrides the checkpoint's.
    points = np.asarray(json.loads(graph.graph["points"]))
    np.save(tmp_path / "points.npy", points)
    assert main(["--checkpoint", PRETRAINED, "--data", str(tmp_path / "points.npy"), "--flow", "consistent",
                 "--out", str(tmp_path / "file")]) == 0
    again = nx.read_graphml(tmp_path / "file" / "dag_N3_policy.graphml")
    assert again.graph["flow"] == "consistent"
    for u, v, data in graph.edges(data=True):
        assert again.edges[u, v]["prob"] == pytest.approx(data["prob"], abs=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "missing.pt"], "does not exist"),
    (["--checkpoint", "pretrained:nope:gfncp"], "'nope'"),
    (["--checkpoint", "pretrained:mog2d-small"], "pretrained:NAME:OBJECTIVE"),
    (["--checkpoint", PRETRAINED, "--N", "5"], "between 1 and 4"),
    (["--flow", "paper"], "need --checkpoint"),
])
def test_dag_cli_bad_checkpoint_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_dag_cli_bad_data_exits_2(tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    np.save(tmp_path / "many.npy", np.zeros((6, 2)))
    for name, message in (("wide.npy", "dimension 5"), ("many.npy", "N=6")):
        assert main(["--checkpoint", PRETRAINED, "--data", str(tmp_path / name), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_offset_flow_residuals_and_policy_dag():
    """flow="offset": log F(s) = -E + b along each trajectory, residuals sum to the MC loss, and the
    annotated DAG of a network with a flow head passes every check."""
    gen = torch.Generator().manual_seed(4)
    net = EnergyNet(EnergyNetConfig(h_dim=8, g_dim=8, hidden=8, encoder_layers=2, g_layers=2, f_layers=2,
                                    flow_head=True)).double()
    x = torch.randn(2, 4, 2, generator=gen, dtype=torch.float64)
    labels = torch.tensor([[0, 1, 0, 2], [0, 0, 1, 1]])
    orders = torch.tensor([[2, 0, 3, 1], [1, 3, 0, 2]])
    with torch.no_grad():
        enc = policy.encode_points(net, x)
        steps = policy.teacher_force(net, enc, labels, None, orders)
        offsets = flows.state_log_flow_offsets(net, enc, None, orders)
    log_flows, residuals = flow_residuals(steps, "offset", offsets)
    expected = -policy.taken_energies(steps) + offsets
    assert torch.allclose(log_flows, expected, atol=1e-12)
    mc = losses.marginal_consistency(steps, "offset", offsets)
    assert torch.allclose(residuals.square().sum(1), mc, atol=1e-9)
    summary = policy_dag(build_dag(3), net, x[0, :3], "offset")
    assert abs(summary["total_probability"] - 1) < 1e-9 and summary["states_with_residual"] > 0


def test_the_figure_explains_its_node_notation_with_nodes_of_the_dag():
    from validation.dag import _notation

    dag = build_dag(3)
    text = _notation(dag)
    example = text.split("e.g. ")[1].split(":")[0] + ":" + text.split("e.g. ")[1].split(":")[1]
    assert example in dag and dag.nodes[example]["kind"] == "partial"
    order, labels = dag.nodes[example]["order"], dag.nodes[example]["labels"]
    for i, label in enumerate(labels):  # the legend spells the example out point by point
        assert f"point {order[i] + 1} -> cluster {label}" in text
    assert "terminal state" in text and "1/N!" in text


def _drawn_figure(monkeypatch, argv):
    """Run the command and keep the figure it drew (``draw_dag`` returns it)."""
    import validation.dag as dag_module

    figures, draw = [], dag_module.draw_dag
    monkeypatch.setattr(dag_module, "draw_dag", lambda *args, **kwargs: figures.append(draw(*args, **kwargs)))
    assert main(argv) == 0
    fig = figures[-1]
    fig.canvas.draw()
    return fig


def test_edge_labels_do_not_overlap_and_lie_along_their_edges(tmp_path, monkeypatch, capsys):
    """The drawn label boxes (matplotlib's own, after layout) are pairwise disjoint, one per edge,
    each printing its edge's probability, centred on its edge and turned along it."""
    import itertools

    fig = _drawn_figure(monkeypatch, ["--checkpoint", PRETRAINED, "--N", "3", "--out", str(tmp_path)])
    ax = fig.axes[0]
    graph = nx.read_graphml(tmp_path / "dag_N3_policy.graphml")
    labels = [t for t in ax.texts if t.get_bbox_patch() is not None and t.get_text()[:2] in ("0.", "1.")]
    assert len(labels) == graph.number_of_edges() == 48
    boxes = [t.get_bbox_patch().get_path().transformed(t.get_bbox_patch().get_transform()) for t in labels]
    overlapping = [(labels[i].get_text(), labels[j].get_text())
                   for i, j in itertools.combinations(range(len(boxes)), 2) if boxes[i].intersects_path(boxes[j])]
    assert not overlapping
    from validation.dag import _layout, build_dag as build

    pos = _layout(build(3))
    to_display = ax.transData
    edges = list(graph.edges(data=True))
    for text in labels:  # each label sits on an edge whose probability it prints, turned along it
        x, y = to_display.transform(text.get_position())
        on = []
        for u, v, data in edges:
            (x0, y0), (x1, y1) = to_display.transform([pos[u], pos[v]])
            t = ((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2)
            distance = abs((x - x0) * (y1 - y0) - (y - y0) * (x1 - x0)) / math.hypot(x1 - x0, y1 - y0)
            angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
            if 0 < t < 1 and distance < 1e-6 * math.hypot(x1 - x0, y1 - y0) + 1e-3 \
                    and abs((angle - text.get_rotation() + 180) % 360 - 180) < 1e-6 and f"{data['prob']:.2f}" == text.get_text():
                on.append((u, v))
        assert on, text.get_text()
    capsys.readouterr()


def test_rotated_box_overlap_matches_matplotlib():
    """The placement's separating-axis test agrees with matplotlib's polygon intersection."""
    from matplotlib.path import Path as MplPath

    from validation.dag import _Box

    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = (_Box((*rng.uniform(0, 30, 2), math.cos(t), math.sin(t), *rng.uniform(2, 10, 2)))
                for t in rng.uniform(-math.pi / 2, math.pi / 2, 2))
        paths = [MplPath(np.array(box.corners() + [box.corners()[0]]), closed=True) for box in (a, b)]
        expected = paths[0].intersects_path(paths[1], filled=True)
        assert a.overlaps(b) == expected == b.overlaps(a)
