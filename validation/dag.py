"""``python -m validation.dag --N 3 --out DIR``: the DAG of Fig. 2 in [1], built and verified.

States: the initial state ``s0``; for every order ``rho`` (a permutation of the points) and
``n = 1..N-1`` the partial assignment ``(rho, c_{1:n})`` of the first ``n`` points of ``rho``;
and the ``Bell(N)`` terminal states, full partitions of the points, shared by all orders. The
first action samples ``rho`` (``N!`` branches); each further action assigns the next point of
``rho`` to an existing cluster or a new one. The builder *verifies* the structure it draws:
``N! * Bell(n)`` states at depth ``n < N``, ``Bell(N)`` terminal states, ``N!`` incoming edges
(trajectories) per terminal state, and one trajectory from ``s0`` per (order, terminal) pair.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import networkx as nx
import torch

from gfncp_pyro.partitions import bell_number, canonicalize

__all__ = ["build_dag", "verify_dag", "draw_dag", "main"]

MAX_DAG_N = 5


def _terminal_name(labels: tuple[int, ...]) -> str:
    blocks: dict[int, list[int]] = {}
    for point, label in enumerate(labels):
        blocks.setdefault(label, []).append(point)
    return "|".join("".join(str(i + 1) for i in b) for b in blocks.values())


def build_dag(n: int) -> nx.DiGraph:
    """The DAG of sequential cluster assignment for ``n`` points (Fig. 2 in [1]).

    Node attributes: ``depth`` (number of assigned points), ``kind`` (``"initial"``,
    ``"partial"`` or ``"terminal"``), ``order`` and ``labels`` (labels of the assigned points in
    the order's sequence, canonical) for partial states, ``partition`` (canonical labels in the
    points' own order) for terminal states. Edge attribute ``action``: the order for the first
    edge, the chosen cluster afterwards.
    """
    if not isinstance(n, int) or not 1 <= n <= MAX_DAG_N:
        raise ValueError(f"N must be an integer between 1 and {MAX_DAG_N} (N! * Bell(N) states), got {n!r}")
    dag = nx.DiGraph()
    dag.add_node("s0", depth=0, kind="initial", label="s0")
    for order in itertools.permutations(range(n)):
        frontier = [("s0", ())]
        for depth in range(1, n + 1):
            nxt = []
            for parent, labels in frontier:
                choices = [0] if depth == 1 else range(max(labels) + 2)
                for k in choices:
                    new = labels + (k,)
                    if depth < n:
                        node = f"{''.join(str(i + 1) for i in order)}:{''.join(map(str, new))}"
                        dag.add_node(node, depth=depth, kind="partial", order=order, labels=new, label=node)
                    else:
                        assignment = [0] * n
                        for point, label in zip(order, new):
                            assignment[point] = label
                        partition = tuple(canonicalize(torch.tensor(assignment)).tolist())
                        node = _terminal_name(partition)
                        dag.add_node(node, depth=n, kind="terminal", partition=partition, label=node)
                    action = order if depth == 1 else k
                    dag.add_edge(parent, node, action=str(action))
                    nxt.append((node, new))
            frontier = nxt
    return dag


def verify_dag(dag: nx.DiGraph, n: int) -> dict:
    """Check the counts of Fig. 2; raise ``AssertionError`` naming the first violation.

    :returns: the verified counts (states per depth, terminal states, trajectories).
    """
    if not nx.is_directed_acyclic_graph(dag):
        raise AssertionError("the graph has a cycle")
    depth_counts = {}
    for _, data in dag.nodes(data=True):
        depth_counts[data["depth"]] = depth_counts.get(data["depth"], 0) + 1
    orders = math.factorial(n)
    expected = {0: 1, n: bell_number(n)}
    for depth in range(1, n):
        expected[depth] = orders * bell_number(depth)
    if depth_counts != expected:
        raise AssertionError(f"states per depth {depth_counts}, expected {expected}")
    terminals = [v for v, d in dag.nodes(data=True) if d["kind"] == "terminal"]
    for node in terminals:
        if dag.out_degree(node) != 0:
            raise AssertionError(f"terminal state {node} has outgoing edges")
    # Trajectories into each terminal state, counted by dynamic programming over the DAG.
    paths = {"s0": 1}
    for node in nx.topological_sort(dag):
        if node != "s0":
            paths[node] = sum(paths[p] for p in dag.predecessors(node))
    for node in terminals:
        if paths[node] != orders or dag.in_degree(node) != orders:
            raise AssertionError(
                f"terminal state {node} has {paths[node]} trajectories and {dag.in_degree(node)} "
                f"incoming edges, expected N! = {orders}"
            )
    for node, data in dag.nodes(data=True):
        if data["kind"] == "partial" and dag.in_degree(node) != 1:
            raise AssertionError(f"non-terminal state {node} has {dag.in_degree(node)} parents, expected 1")
    return {
        "states_per_depth": expected,
        "terminal_states": len(terminals),
        "trajectories": orders * len(terminals),
    }


def draw_dag(dag: nx.DiGraph, path: Path, title: str = "") -> None:
    """Draw the DAG in layers (depth left to right) and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = nx.multipartite_layout(dag, subset_key="depth", align="vertical")
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    n_nodes = dag.number_of_nodes()
    fig, ax = plt.subplots(figsize=(12, max(6, 0.22 * n_nodes ** 0.9)))
    colors = {"initial": "#4c72b0", "partial": "#dddddd", "terminal": "#dd8452"}
    nx.draw_networkx_edges(dag, pos, ax=ax, alpha=0.35, arrows=True, arrowsize=6, width=0.7)
    nx.draw_networkx_nodes(
        dag, pos, ax=ax, node_size=260, node_color=[colors[d["kind"]] for _, d in dag.nodes(data=True)]
    )
    nx.draw_networkx_labels(dag, pos, ax=ax, labels=nx.get_node_attributes(dag, "label"), font_size=6)
    edge_labels = nx.get_edge_attributes(dag, "prob")
    if edge_labels:
        nx.draw_networkx_edge_labels(
            dag, pos, ax=ax, edge_labels={e: f"{p:.2f}" for e, p in edge_labels.items()}, font_size=5
        )
    ax.set_title(title or f"Sequential clustering DAG, N = {max(d['depth'] for _, d in dag.nodes(data=True))}")
    ax.set_axis_off()
    for kind, color in colors.items():
        ax.scatter([], [], c=color, label=f"{kind} state")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _graphml_ready(dag: nx.DiGraph) -> nx.DiGraph:
    out = nx.DiGraph()
    for node, data in dag.nodes(data=True):
        out.add_node(node, **{k: (str(v) if isinstance(v, tuple) else v) for k, v in data.items()})
    for u, v, data in dag.edges(data=True):
        out.add_edge(u, v, **data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.dag", description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=3, help=f"number of points (1..{MAX_DAG_N})")
    parser.add_argument("--out", type=Path, default=Path("out/dag"), help="output directory")
    args = parser.parse_args(argv)
    try:
        dag = build_dag(args.N)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = verify_dag(dag, args.N)
    args.out.mkdir(parents=True, exist_ok=True)
    png, graphml = args.out / f"dag_N{args.N}.png", args.out / f"dag_N{args.N}.graphml"
    draw_dag(dag, png)
    nx.write_graphml(_graphml_ready(dag), graphml)
    print(
        f"DAG for N={args.N}: {dag.number_of_nodes()} states, {dag.number_of_edges()} edges; "
        f"states per depth {counts['states_per_depth']}; {counts['terminal_states']} terminal states "
        f"(Bell({args.N})), each reached by N! = {math.factorial(args.N)} trajectories: verified."
    )
    print(f"wrote {png} and {graphml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
