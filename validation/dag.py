"""``python -m validation.dag --N 3 --out DIR``: the DAG of Fig. 2 in [1], built and verified.

States: the initial state ``s0``; for every order ``rho`` (a permutation of the points) and
``n = 1..N-1`` the partial assignment ``(rho, c_{1:n})`` of the first ``n`` points of ``rho``;
and the ``Bell(N)`` terminal states, full partitions of the points, shared by all orders. The
first action samples ``rho`` (``N!`` branches); each further action assigns the next point of
``rho`` to an existing cluster or a new one. The builder *verifies* the structure it draws:
``N! * Bell(n)`` states at depth ``n < N``, ``Bell(N)`` terminal states, ``N!`` incoming edges
(trajectories) per terminal state, and one trajectory from ``s0`` per (order, terminal) pair.

With ``--checkpoint SPEC`` (a path or ``pretrained:NAME:OBJECTIVE``; ``N <= 4``) the DAG of a
data set (``--data FILE`` with points ``(N, D)``, else ``N`` points drawn from the checkpoint's
CRP mixture with ``--seed``) carries the model's policy, flows and flow-matching residuals
(``--flow``, default the checkpoint's), verified by :mod:`validation.dag_policy`; it prints the
residuals and, per terminal state, the spread of ``q(c | x, rho)`` over the orders (zero for
an order-consistent model).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import networkx as nx
import torch

from gfncp_pyro.checkpoint import CheckpointError
from gfncp_pyro.commands import OneLineParser, UserError, seed_value
from gfncp_pyro.data.points import read_points
from gfncp_pyro.loading import resolve_model
from gfncp_pyro.interrupts import run_interruptible
from gfncp_pyro.outputs import check_output_dir, write_atomic_with
from gfncp_pyro.losses import FLOWS
from gfncp_pyro.nn import EnergyNet
from gfncp_pyro.partitions import bell_number, canonicalize
from validation.dag_policy import MAX_POLICY_N, policy_dag

__all__ = ["MAX_DAG_N", "build_dag", "verify_dag", "draw_dag", "main"]

MAX_DAG_N = 5
MAX_LABELLED_FAN_IN = 60
"""More edges into terminal states than this (N = 4: 360) are too steep to label legibly."""


def _terminal_name(labels: tuple[int, ...]) -> str:
    blocks: dict[int, list[int]] = {}
    for point, label in enumerate(labels):
        blocks.setdefault(label, []).append(point)
    return "|".join("".join(str(i + 1) for i in b) for b in blocks.values())


def _partial_name(order: tuple[int, ...], labels) -> str:
    return f"{''.join(str(i + 1) for i in order)}:{''.join(map(str, labels))}"


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
                        node = _partial_name(order, new)
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


def _layout(dag: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Depth left to right; the tree of non-terminal states drawn without crossings (each
    state centred on its children), terminal states spread evenly, sorted by their parents."""
    pos: dict[str, tuple[float, float]] = {}
    leaves = 0

    def place(node: str) -> float:
        nonlocal leaves
        children = sorted((v for v in dag.successors(node) if dag.nodes[v]["kind"] == "partial"),
                          key=lambda v: dag.edges[node, v]["action"])
        if children:
            y = sum(place(v) for v in children) / len(children)
        else:
            y, leaves = float(leaves), leaves + 1
        pos[node] = (float(dag.nodes[node]["depth"]), -y)
        return y

    place("s0")
    terminals = [v for v, d in dag.nodes(data=True) if d["kind"] == "terminal"]
    terminals.sort(key=lambda v: sum(-pos[p][1] for p in dag.predecessors(v)) / dag.in_degree(v))
    spacing = (leaves - 1) / max(len(terminals) - 1, 1)
    offset = (leaves - 1) / 2 if len(terminals) == 1 else 0.0
    for i, node in enumerate(terminals):
        pos[node] = (float(dag.nodes[node]["depth"]), -(offset + i * spacing))
    return pos


def draw_dag(dag: nx.DiGraph, path: Path, title: str = ""):
    """Draw the DAG in layers (depth left to right) and save it as a PNG.

    On a DAG from :func:`validation.dag_policy.annotate_dag` the edges carry their
    probabilities (2 decimals), partial states are coloured by their residual (colour bar) and
    print it, and terminal states print ``q`` averaged over the orders. Drawn outside pyplot (no
    global backend switch); returns the :class:`~matplotlib.figure.Figure`.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    pos = _layout(dag)
    rows = 1 + max(-y for _, y in pos.values())  # states in the deepest non-terminal layer
    fan_in = sum(dag.in_degree(v) for v, d in dag.nodes(data=True) if d["kind"] == "terminal")
    label_fan_in = "prob" in next(iter(dag.edges.values()), {}) and fan_in <= MAX_LABELLED_FAN_IN
    fig = Figure(figsize=(14, max(6.5, (0.75 if label_fan_in else 0.4) * rows) + 1.2))
    FigureCanvasAgg(fig)  # a renderer for the label layout
    ax = fig.subplots()
    residuals = nx.get_node_attributes(dag, "residual")
    colors = {"initial": "#4c72b0", "partial": "#dddddd", "terminal": "#dd8452"}
    if residuals:  # keep blue and red for the residuals' colour map
        colors.update(initial="#f2c14e", terminal="#8cc084")
    node_colors = [colors[d["kind"]] for _, d in dag.nodes(data=True)]
    labels = nx.get_node_attributes(dag, "label")
    if residuals:
        bound = max(max(abs(r) for r in residuals.values()), 1e-12)
        cmap, norm = matplotlib.colormaps["coolwarm"], TwoSlopeNorm(0.0, -bound, bound)
        node_colors = [cmap(norm(d["residual"])) if "residual" in d else c
                       for (_, d), c in zip(dag.nodes(data=True), node_colors)]
        labels = {v: f"{labels[v]}\nr={residuals[v]:+.2f}" if v in residuals else labels[v] for v in dag}
        labels.update({v: f"{d['label']}\nq={d['q_mean']:.3f}" for v, d in dag.nodes(data=True) if "q_mean" in d})
        bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, fraction=0.025, pad=0.01)
        bar.set_label("flow-matching residual r(s) (Eq. 24)", fontsize=8)
    node_size = 600 if residuals else 260
    nx.draw_networkx_edges(dag, pos, ax=ax, alpha=0.35, arrows=True, arrowsize=6, width=0.7, node_size=node_size)
    nx.draw_networkx_nodes(dag, pos, ax=ax, node_size=node_size, node_color=node_colors)
    dark = {v for v, c in zip(dag, node_colors) if _luminance(c) < 0.45}
    for group, font_color in ((set(dag) - dark, "black"), (dark, "white")):
        nx.draw_networkx_labels(dag, pos, ax=ax, labels={v: labels[v] for v in group},
                                font_size=5 if residuals else 6, font_color=font_color)
    title = title or f"Sequential clustering DAG, N = {max(d['depth'] for _, d in dag.nodes(data=True))}"
    if "prob" in next(iter(dag.edges.values()), {}) and not label_fan_in:
        title += f"\n(the probabilities of the {fan_in} edges into terminal states are in the GraphML)"
    ax.set_title(title)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_axis_off()
    for kind, color in colors.items():
        ax.scatter([], [], c=color, label=f"{kind} state" + (" (colour: r)" if residuals and kind == "partial" else ""))
    ax.legend(loc="lower left", fontsize=8)
    fig.text(0.01, 0.005, _notation(dag), fontsize=7.5, ha="left", va="bottom", family="monospace",
             bbox={"boxstyle": "round,pad=0.4", "fc": "#f7f7f7", "ec": "#bbbbbb"})
    fig.tight_layout(rect=(0, 0.075, 1, 1))
    _draw_edge_probabilities(ax, dag, pos, label_fan_in, node_size)
    write_atomic_with(path, lambda handle: fig.savefig(handle, dpi=150, format="png"), "wb")
    return fig


def _notation(dag: nx.DiGraph) -> str:
    """The legend of the node and edge notation, with examples taken from ``dag``."""
    partials = [d for _, d in dag.nodes(data=True) if d["kind"] == "partial" and d["depth"] >= 2]
    partial = max(partials, key=lambda d: (max(d["labels"]) > 0, list(d["order"]) != sorted(d["order"])), default=None)
    terminal = next(d for _, d in dag.nodes(data=True) if d["kind"] == "terminal")
    lines = []
    if partial is not None:
        order, labels = partial["order"], partial["labels"]
        name = _partial_name(order, labels)
        steps = ", ".join(f"point {order[i] + 1} -> cluster {c}" for i, c in enumerate(labels))
        lines.append(f"partial state  ORDER:LABELS, e.g. {name}: the points are assigned in the order "
                     f"{'-'.join(str(i + 1) for i in order)}; so far {steps} (labels in order of assignment)")
    blocks = " and ".join("{" + ", ".join(b) + "}" for b in _terminal_name(terminal["partition"]).split("|"))
    lines.append(f"terminal state  blocks of the partition, e.g. {_terminal_name(terminal['partition'])}: clusters "
                 f"{blocks} (shared by all orders)")
    edge = "edges  s0 -> ORDER: the order is drawn (1/N! each); then each edge assigns the next point of the order"
    if "prob" in next(iter(dag.edges.values()), {}):
        edge += "; edge label: its probability under the policy"
    return "\n".join(lines + [edge])


def _luminance(color) -> float:
    from matplotlib.colors import to_rgb

    red, green, blue = to_rgb(color)
    return 0.299 * red + 0.587 * green + 0.114 * blue


_LABEL_STYLE = {"fontsize": 6.5, "ha": "center", "va": "center", "zorder": 5, "rotation_mode": "anchor",
                "bbox": {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "#999999", "lw": 0.3, "alpha": 0.95}}
"""Edge labels: along the edge, on a white box over it."""

_POSITIONS = (0.3, 0.4, 0.5, 0.25, 0.35, 0.45, 0.55, 0.6, 0.2, 0.65, 0.7, 0.15, 0.75, 0.8)
_FAN_IN_POSITIONS = (0.12, 0.18, 0.24, 0.3, 0.36, 0.42, 0.48, 0.54, 0.6, 0.66, 0.72)
"""Where along an edge (fraction from its source) a label may sit, in order of preference; the
edges into terminal states converge, so their labels go near the source."""


class _Box(tuple):
    """A label's box in display coordinates: ``(cx, cy, cos, sin, half_width, half_height)``."""

    def corners(self):
        cx, cy, c, s, w, h = self
        return [(cx + c * dx - s * dy, cy + s * dx + c * dy) for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))]

    def overlaps(self, other: "_Box") -> bool:
        """Separating-axis test of two rotated rectangles."""
        mine, theirs = self.corners(), other.corners()
        for c, s in ((self[2], self[3]), (-self[3], self[2]), (other[2], other[3]), (-other[3], other[2])):
            a = [c * x + s * y for x, y in mine]
            b = [c * x + s * y for x, y in theirs]
            if max(a) <= min(b) or max(b) <= min(a):
                return False
        return True

    def hits_disc(self, centre, radius: float) -> bool:
        cx, cy, c, s, w, h = self
        dx, dy = centre[0] - cx, centre[1] - cy
        u, v = c * dx + s * dy, -s * dx + c * dy  # the centre in the box's frame
        return math.hypot(u - min(max(u, -w), w), v - min(max(v, -h), h)) < radius


def _draw_edge_probabilities(ax, dag: nx.DiGraph, pos: dict[str, tuple[float, float]], fan_in: bool,
                             node_size: float = 300.0) -> list:
    """Edge attribute ``prob`` (2 decimals) written along each edge, at the first of a few
    positions on it (:data:`_POSITIONS`) where its box overlaps neither a label placed before nor
    a node (greedy placement in display coordinates; where no position is free, the one with the
    fewest overlaps). Edges into terminal states are labelled only if ``fan_in``.

    :returns: the label :class:`~matplotlib.text.Text` objects.
    """
    to_display = ax.transData
    renderer = ax.figure.canvas.get_renderer()
    probe = ax.text(0.0, 0.0, "0.00", **_LABEL_STYLE)
    extent = probe.get_window_extent(renderer)
    probe.remove()
    pixels = ax.figure.dpi / 72.0
    pad = 2 * 0.12 * _LABEL_STYLE["fontsize"] * pixels + 2.0  # the box's padding and a 1-pixel margin
    half_w, half_h = (extent.width + pad) / 2, (extent.height + pad) / 2
    radius = math.sqrt(node_size) / 2 * pixels  # node_size is the disc's area in points^2
    discs = [tuple(to_display.transform(pos[v])) for v in dag]
    placed, texts = [], []
    edges = [(u, v) for u, v in dag.edges if "prob" in dag.edges[u, v]
             and (fan_in or dag.nodes[v]["kind"] != "terminal")]
    edges.sort(key=lambda e: (dag.nodes[e[1]]["kind"] == "terminal", dag.nodes[e[0]]["depth"], -pos[e[0]][1],
                              -pos[e[1]][1]))
    for u, v in edges:
        (x0, y0), (x1, y1) = to_display.transform([pos[u], pos[v]])
        angle = math.atan2(y1 - y0, x1 - x0)
        c, s = math.cos(angle), math.sin(angle)
        best = None
        for t in _FAN_IN_POSITIONS if dag.nodes[v]["kind"] == "terminal" else _POSITIONS:
            box = _Box((x0 + t * (x1 - x0), y0 + t * (y1 - y0), c, s, half_w, half_h))
            cost = sum(box.overlaps(other) for other in placed) + sum(box.hits_disc(d, radius) for d in discs)
            if best is None or cost < best[0]:
                best = (cost, box)
            if cost == 0:
                break
        box = best[1]
        placed.append(box)
        x, y = to_display.inverted().transform(box[:2])
        texts.append(ax.text(x, y, f"{dag.edges[u, v]['prob']:.2f}", rotation=math.degrees(angle), **_LABEL_STYLE))
    return texts


def _graphml_ready(dag: nx.DiGraph) -> nx.DiGraph:
    out = nx.DiGraph(**dag.graph)
    for node, data in dag.nodes(data=True):
        out.add_node(node, **{k: (str(v) if isinstance(v, tuple) else v) for k, v in data.items()})
    for u, v, data in dag.edges(data=True):
        out.add_edge(u, v, **data)
    return out


def _checkpoint_points(args) -> tuple[EnergyNet, torch.Tensor, str]:
    """The network, the points ``(N, D)`` in its dtype and device, and the default flow."""
    net, config = resolve_model(args.checkpoint)
    if len(net.point_shape) != 1:
        raise UserError(f"{args.checkpoint} clusters points of shape {net.point_shape}; the DAG needs a model "
                        "of vector points (N, D)")
    if args.float64:
        net = net.double()
    param = next(net.parameters())
    if args.data is not None:
        points = read_points(args.data)
        if points.shape[1] != config.dim:
            raise UserError(f"{args.data} has points of dimension {points.shape[1]}, but the model was trained on "
                            f"dimension {config.dim}")
        if args.N is not None and args.N != points.shape[0]:
            raise UserError(f"--N {args.N} disagrees with the {points.shape[0]} points of {args.data}; drop --N")
        if not 1 <= points.shape[0] <= MAX_POLICY_N:
            raise UserError(f"{args.data} has N={points.shape[0]} points; --checkpoint needs 1 <= N <= "
                            f"{MAX_POLICY_N} (N! * Bell(N) trajectories)")
        x = torch.as_tensor(points, dtype=param.dtype, device=param.device)
    else:
        if not config.data.is_mixture:
            raise UserError(f"{args.checkpoint} was trained on {config.data.name}, not on the Gaussian mixture; pass its "
                            "points with --data FILE")
        n = 3 if args.N is None else args.N
        if not 1 <= n <= MAX_POLICY_N:
            raise UserError(f"--N must be between 1 and {MAX_POLICY_N} with --checkpoint (N! * Bell(N) "
                            f"trajectories), got {n}")
        generator = torch.Generator().manual_seed(0 if args.seed is None else args.seed)
        mixture = config.mixture()
        x = mixture.sample_batch(torch.tensor([n]), generator=generator, dtype=param.dtype).x[0].to(param.device)
    return net, x, getattr(config.objective, "flow", "consistent")


def _run(args) -> int:
    if args.checkpoint is None:
        extra = [flag for flag in ("data", "seed", "flow") if getattr(args, flag) is not None]
        extra += ["float64"] if args.float64 else []
        if extra:
            raise UserError(f"--{', --'.join(extra)} need --checkpoint SPEC")
        n = 3 if args.N is None else args.N
        dag = build_dag(n)
        stem = f"dag_N{n}"
    else:
        net, x, default_flow = _checkpoint_points(args)
        n, flow = x.shape[0], args.flow or default_flow
        dag = build_dag(n)
        summary = policy_dag(dag, net, x, flow)
        dag.graph.update(checkpoint=args.checkpoint, flow=flow, points=json.dumps(x.tolist()))
        stem = f"dag_N{n}_policy"
    counts = verify_dag(dag, n)
    args.out.mkdir(parents=True, exist_ok=True)
    png, graphml = args.out / f"{stem}.png", args.out / f"{stem}.graphml"
    print(
        f"DAG for N={n}: {dag.number_of_nodes()} states, {dag.number_of_edges()} edges; "
        f"states per depth {counts['states_per_depth']}; {counts['terminal_states']} terminal states "
        f"(Bell({n})), each reached by N! = {math.factorial(n)} trajectories: verified."
    )
    if args.checkpoint is not None:
        title = f"Policy of {args.checkpoint} on {n} points, residuals for flow = {flow}"
        print(
            f"policy of {args.checkpoint}: outgoing probabilities sum to 1 (max error "
            f"{summary['prob_sum_error']:.1e}); edge products = exp(policy.log_prob_orders) (max error "
            f"{summary['trajectory_error']:.1e}); sum over terminals of q averaged over orders = "
            f"{summary['total_probability']:.8f}: verified to {summary['atol']:.1e}.\n"
            f"flow-matching residuals (Eq. 24, flow={flow}) of {summary['states_with_residual']} states: "
            f"max |r| = {summary['max_abs_residual']:.4g}, mean |r| = {summary['mean_abs_residual']:.4g}\n"
            f"{'terminal':<10} {'mean_rho q':>10} {'max |q_rho - mean|':>19}"
        )
        for name, (q_mean, q_dev) in summary["terminals"].items():
            print(f"{name:<10} {q_mean:>10.4f} {q_dev:>19.2e}")
    else:
        title = ""
    draw_dag(dag, png, title)
    write_atomic_with(graphml, lambda handle: nx.write_graphml(_graphml_ready(dag), handle), "wb")
    print(f"wrote {png} and {graphml}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m validation.dag", description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=None,
                        help=f"number of points (1..{MAX_DAG_N}, 1..{MAX_POLICY_N} with --checkpoint; default 3, "
                             "or the points of --data)")
    parser.add_argument("--out", type=Path, default=Path("out/dag"), help="output directory")
    parser.add_argument("--checkpoint", default=None,
                        help="label the DAG with this model's policy: a path or pretrained:NAME:OBJECTIVE")
    parser.add_argument("--data", type=Path, default=None,
                        help="points (N, D) (.npy or .csv) for --checkpoint; default: drawn from its CRP mixture")
    parser.add_argument("--seed", type=seed_value, default=None, help="seed of the drawn points (default 0)")
    parser.add_argument("--flow", choices=FLOWS, default=None,
                        help="flow parametrisation of the residuals (default: the checkpoint's)")
    parser.add_argument("--float64", action="store_true",
                        help="evaluate the checkpoint's network in float64 (checks to ~1e-9)")
    args = parser.parse_args(argv)
    return run_interruptible(lambda: _guarded(args), "python -m validation.dag")


def _guarded(args) -> int:
    """:func:`_run`; user mistakes (bad flags, files, checkpoints, output paths) as one line, exit 2."""
    try:
        check_output_dir(args.out, "--out")
        return _run(args)
    except (UserError, ValueError, CheckpointError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
