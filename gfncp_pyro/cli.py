"""The ``gfncp`` command line: ``train``, ``evaluate``, ``cluster``, ``info``.

User mistakes (a missing or malformed file, a checkpoint that does not fit) print one line on
stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint, load_model
from .config import PRESETS, TrainConfig, preset

__all__ = ["main", "read_points", "resolve_model"]

_OVERRIDES = {
    # flag: (config field, type)
    "objective": ("objective", str), "flow": ("flow", str), "reward": ("reward", str), "iterations": ("iterations", int),
    "batch_size": ("batch_size", int), "lr": ("lr", float), "lr_min": ("lr_min", float),
    "beta": ("beta", float), "delta": ("delta", float), "lambda_cd": ("lambda_cd", float),
    "mc_steps": ("mc_steps", int), "seed": ("seed", int), "device": ("device", str),
    "n_min": ("n_min", int), "n_max": ("n_max", int), "alpha": ("alpha", float),
    "sigma_mu": ("sigma_mu", float), "sigma_x": ("sigma_x", float), "val_every": ("val_every", int),
    "val_sets": ("val_sets", int), "grad_clip": ("grad_clip", float),
    "data": ("data_path", str), "split": ("split", str),
    "balance": ("balance", str), "balance_orders": ("balance_orders", int),
    "balance_samples": ("balance_samples", int), "balance_target": ("balance_target", str), "gauge": ("gauge", str), "mc_weight": ("mc_weight", float),
    "mc_warmup": ("mc_warmup", int), "mc_ramp": ("mc_ramp", int), "mc_calibrate": ("mc_calibrate", int), "explore": ("explore", str),
    "order_weight": ("order_weight", float),
    "panel_sets": ("panel_sets", int), "select_by": ("select_by", str),
}

_HELP = {
    "data": "images (an IDX directory or .npz) or embeddings (.npz/.pt/.safetensors) for the image presets",
    "split": "which part of --data trains: index:A:B, classes:K, classes:half or all (the rest is held out)",
}


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


def read_points(path: str | Path) -> np.ndarray:
    """Read points ``(N, D)`` from a ``.csv`` (numbers only, comma-separated, no header) or ``.npy``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} does not exist")
    if path.suffix == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise UserError(f"{path} is not a readable .npy array of numbers ({err})") from None
    elif path.suffix in (".csv", ".txt"):
        if path.stat().st_size == 0 or not path.read_text().strip():
            raise UserError(f"{path} is empty; it must hold one point per line, coordinates separated by commas")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                points = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
            except ValueError as err:
                raise UserError(
                    f"{path}: {str(err).splitlines()[0]}; the CSV must hold numbers only "
                    "(no header line, no missing values), one point per line"
                ) from None
    else:
        raise UserError(f"input must be a .csv or .npy file, got {path.name}")
    if points.ndim != 2 or points.shape[0] == 0:
        raise UserError(f"{path} must hold a 2-D array of points (N, D) with N >= 1, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise UserError(f"{path} contains NaN or infinite values (missing entries?)")
    return points


def _pretrained(spec: str) -> tuple[str, str] | None:
    """``(NAME, OBJECTIVE)`` of a ``pretrained:NAME:OBJECTIVE`` spec, ``None`` for a path."""
    if not spec.startswith("pretrained:"):
        return None
    parts = spec.split(":")
    if len(parts) != 3:
        raise UserError("use pretrained:NAME:OBJECTIVE, e.g. pretrained:mog2d-small:gfncp")
    return parts[1], parts[2]


def resolve_model(spec: str):
    """A checkpoint path, or ``pretrained:NAME:OBJECTIVE`` for a model shipped with the package."""
    from .pretrained import load_pretrained

    shipped = _pretrained(spec)
    return load_pretrained(*shipped, with_config=True) if shipped else load_model(spec)


def _train(args) -> int:
    from .train import Trainer, init_distributed

    overrides = {field: kind(getattr(args, flag)) for flag, (field, kind) in _OVERRIDES.items()
                 if getattr(args, flag) is not None}
    if args.bf16:
        overrides["bf16"] = True
    if args.supervised:
        overrides["supervised"] = True
    if args.online:
        overrides["net_online"] = True
    if args.detach_reward is not None:
        overrides["detach_reward"] = args.detach_reward
    config = preset(args.preset, **overrides)
    init_distributed()
    trainer = Trainer(config, args.out, resume=args.resume, progress=not args.no_progress)
    if trainer.rank == 0:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        print(f"training {config.objective} ({config.preset}) on {trainer.device} into {args.out}, "
              f"world size {trainer.world}, from step {trainer.step}", file=sys.stderr)
    result = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps(result))
    return 0


def _model_name(spec: str, config: TrainConfig) -> str:
    return config.objective.upper() if spec.startswith("pretrained:") else f"{config.objective.upper()} ({Path(spec).parent.name or spec})"


def _evaluate(args) -> int:
    from .evaluation import evaluate

    reports, top_sets = {}, {}
    for spec in args.checkpoint:
        net, config = resolve_model(spec)
        if args.data is not None:
            if config.data == "mog":
                raise UserError(f"{spec} was trained on Gaussian mixtures; --data applies to image/embedding models")
            config = config.replace(data_path=args.data)
        source = None
        if config.data != "mog" or args.test_alpha is not None:
            from .data.sources import evaluation_source

            source = evaluation_source(config, alpha=args.test_alpha)
        report = evaluate(net, config, num_sets=args.sets, num_points=args.N, seed=args.seed, sdpp_sets=args.sdpp_sets,
                          sdpp_orders=args.sdpp_orders, progress=not args.no_progress, source=source,
                          keep_sets=1 if args.figures and config.data == "images" else 0)
        report["checkpoint"] = spec
        report["objective"] = config.objective
        name = _model_name(spec, config)
        print(f"{name}: {spec}")
        for metric in ("nmi", "ari", "mc_paper", "mc_consistent", "sdpp"):
            if metric in report:
                r = report[metric]
                print(f"  {metric:<14} {r['mean']:.4f} ± {r['std']:.4f} (median {r['median']:.4f}, n={r['n']})")
        if "sets" in report:
            top_sets[name] = (net, report.pop("sets")[0])
        reports[name] = report
    if args.figures:
        _evaluation_figures(reports, top_sets, Path(args.figures), args.N)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        data = next(iter(reports.values())) if len(reports) == 1 else {"models": reports}
        Path(args.json).write_text(json.dumps(data, indent=2))
        print(f"wrote {args.json}")
    return 0


def _evaluation_figures(reports: dict, top_sets: dict, out: Path, n: int) -> None:
    """SDPP histogram and ECDF of every model (Fig. 1 in [1]); for image models the top-3
    clusterings of the first test set by beam search (Fig. 3)."""
    from . import decoding
    from .figures import plot_sdpp, plot_top_clusterings

    out.mkdir(parents=True, exist_ok=True)
    values = {name: r["sdpp_values"] for name, r in reports.items() if r.get("sdpp_values")}
    if values:
        print(f"wrote {plot_sdpp(values, out / 'sdpp.png', title=f'SDPP of the true partition, test sets of N={n}')}")
    for name, (net, first) in top_sets.items():
        with torch.no_grad():
            labels, log_q = decoding.beam_search(net, first["x"].to(next(net.parameters()).dtype), beam_width=8, top_k=3)
        clusterings = [(lab, float(lq)) for lab, lq in zip(labels, log_q)]
        slug = name.split(" ")[0].lower()
        path = plot_top_clusterings(first["x"], clusterings, out / f"top3_{slug}.png",
                                    title=f"{name}: top-3 clusterings of one test set (beam search, log q)")
        print(f"wrote {path}")


def _cluster(args) -> int:
    from . import decoding

    start = time.perf_counter()
    # Decoding one set is a chain of small per-step operations: one thread is fastest, and on a
    # busy machine OpenMP's spin-waiting makes more threads many times slower.
    torch.set_num_threads(1)
    points = read_points(args.input)
    net, config = resolve_model(args.checkpoint)
    if points.shape[1] != config.dim:
        raise UserError(f"{args.input} has points of dimension {points.shape[1]}, but the model was trained on "
                        f"dimension {config.dim}")
    x = torch.as_tensor(points, dtype=next(net.parameters()).dtype)
    labels, log_prob = decoding.greedy(net, x)
    top_labels, top_log_prob = decoding.beam_search(net, x, beam_width=max(args.top_k, 8), top_k=args.top_k)
    result = {
        "labels": labels.tolist(), "log_prob": float(log_prob), "num_clusters": int(labels.max()) + 1,
        "top": [{"labels": lab.tolist(), "log_prob": float(lp)} for lab, lp in zip(top_labels, top_log_prob)],
    }
    if args.output:
        np.savetxt(args.output, labels.numpy()[:, None], fmt="%d")
    if args.png:
        _plot_clusterings(points, top_labels, top_log_prob, args.png)
    elapsed = time.perf_counter() - start
    top = ", ".join(f"{t['log_prob']:.3f}" for t in result["top"])
    print(json.dumps(result) if args.json else
          f"{points.shape[0]} points -> {result['num_clusters']} clusters, log q = {result['log_prob']:.3f} "
          f"(greedy); top-{len(result['top'])} log q: {top} [{elapsed:.2f} s]")
    return 0


def _plot_clusterings(points: np.ndarray, labels: torch.Tensor, log_prob: torch.Tensor, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = labels.shape[0]
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.2), squeeze=False)
    for ax, lab, lp in zip(axes[0], labels, log_prob.tolist()):
        ax.scatter(points[:, 0], points[:, 1 if points.shape[1] > 1 else 0], c=lab.numpy(), cmap="tab20", s=12)
        ax.set_title(f"{int(lab.max()) + 1} clusters, log q = {lp:.2f}", fontsize=10)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]" if points.shape[1] > 1 else "x[0]")
    fig.suptitle("Most probable clusterings under the policy (beam search)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _info(args) -> int:
    from .pretrained import PRETRAINED_DIR

    shipped = _pretrained(args.checkpoint)
    state = load_checkpoint(PRETRAINED_DIR / ("-".join(shipped) + ".pt") if shipped else args.checkpoint)
    config = TrainConfig.from_dict(state["config"])
    params = sum(v.numel() for v in state["model"].values())
    print(f"gfncp-pyro checkpoint (format {state['format_version']}, written by {state['package_version']})")
    print(f"objective {config.objective}, flow {config.flow}, preset {config.preset}, step {state.get('step')}, "
          f"best validation loss {state.get('best_val')}, {params:,} parameters")
    print(json.dumps(dataclasses.asdict(config), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfncp", description="Order-consistent amortized clustering (GFNCP, NCP).")
    parser.add_argument("--version", action="version", version=f"gfncp-pyro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train GFNCP or NCP (Algorithm 1)")
    train.add_argument("--preset", default="mog2d-small", choices=sorted(PRESETS))
    train.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    train.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA")
    train.add_argument("--online", action="store_true", help="online mode (App. C): the energy ignores "
                       "unassigned points (U = 0), so points can arrive one by one")
    train.add_argument("--supervised", action="store_true",
                       help="image/embedding data: train on true classes instead of instance discrimination")
    train.add_argument("--detach-reward", action=argparse.BooleanOptionalAction, default=None,
                       help="balance=variance: the rewards enter the balance term without gradient (default: on)")
    train.add_argument("--no-progress", action="store_true")
    for flag, (_, kind) in _OVERRIDES.items():
        train.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, default=None,
                           help=_HELP.get(flag, f"override the preset's {flag}"))
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="the paper's protocol: greedy NMI, ARI, MC, SDPP")
    ev.add_argument("checkpoint", nargs="+", help="checkpoint path(s) or pretrained:NAME:OBJECTIVE (several: "
                    "compared on the same test sets)")
    ev.add_argument("--sets", type=int, default=3000)
    ev.add_argument("--N", type=int, default=300)
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--sdpp-sets", type=int, default=20)
    ev.add_argument("--sdpp-orders", type=int, default=500)
    ev.add_argument("--data", default=None, help="image/embedding models: read the data from here instead of the "
                    "path they were trained with (same split)")
    ev.add_argument("--test-alpha", type=float, default=None, help="CRP concentration of the test partitions "
                    "(default: the training alpha)")
    ev.add_argument("--figures", default=None, help="directory for sdpp.png (histogram + ECDF) and, for image "
                    "models, top3_*.png")
    ev.add_argument("--json", default=None, help="write the report here (one model: its report; several: "
                    '{"models": {name: report}})')
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_evaluate)

    cl = sub.add_parser("cluster", help="cluster the points of a CSV or .npy file")
    cl.add_argument("checkpoint", help="checkpoint path or pretrained:NAME:OBJECTIVE")
    cl.add_argument("--input", required=True, help="points (N, D): .csv without header, or .npy")
    cl.add_argument("--top-k", type=int, default=3)
    cl.add_argument("--output", default=None, help="write the greedy labels here, one per line")
    cl.add_argument("--png", default=None, help="draw the top clusterings (first two coordinates)")
    cl.add_argument("--json", action="store_true", help="print the result as JSON")
    cl.set_defaults(func=_cluster)

    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", help="checkpoint path or pretrained:NAME:OBJECTIVE")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, CheckpointError, ValueError) as err:
        print(f"gfncp {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
