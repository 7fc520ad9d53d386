"""The ``gfncp`` command line: ``train``, ``evaluate``, ``cluster``, ``info``.

User mistakes (a missing or malformed file, an output path that cannot be written, a checkpoint
that does not fit or holds NaN weights, an unknown device, an absurd flag value) print one line
on stderr and exit with status 2, before any work starts where they can be seen beforehand; no
traceback. Reports and figures are written atomically. Ctrl-C exits with 130 and SIGTERM with 143
(training saves ``last.pt`` first); a training failure prints one line naming the saved state
(exit 2 for a non-finite loss, 1 for anything else; ``GFNCP_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint
from .config import PRESETS, TrainConfig, preset
from .commands import (HYPER_RANGE, OneLineParser, UserError, finite_number, float_between, hyper_parameter,
                       int_at_least, one_line as _one_line, seed_value)
from .data.kinds import EmbeddingData, ImageData
from .data.points import read_points
from .interrupts import run_interruptible
from .loading import check_network_outputs, resolve_model
from .outputs import check_output_dir, check_output_file, write_atomic

__all__ = ["main", "read_points", "resolve_model", "OneLineParser", "finite_number", "int_at_least", "hyper_parameter",
           "seed_value", "HYPER_RANGE", "UserError", "check_network_outputs"]

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
    "order_weight": ("order_weight", float), "order_draw": ("order_draw", str),
    "sample_orders": ("sample_orders", int), "order_target": ("order_target", str),
    "panel_sets": ("panel_sets", int), "select_by": ("select_by", str),
    "x_dim": ("net_x_dim", int), "threads": ("threads", int),
    "num_orders": ("num_orders", int), "init": ("init", str),
}

_HELP = {
    "data": "images (an IDX directory or .npz) or embeddings (.npz/.pt/.safetensors, or .npy with --labels) for the "
            "image and embedding presets",
    "split": "which part of --data trains: index:A:B, classes:K, classes:half or all (the rest is held out)",
    "x_dim": "embedding presets: the feature size (default: taken from --data when the preset's does not fit)",
    "init": "warm start: a checkpoint (or pretrained:NAME:OBJECTIVE) whose network weights start the run, with a "
            "fresh optimiser and LR schedule (fine-tuning); its network sizes must equal the run's",
    "num_orders": "NCP: random orders per set, the NLL averaged over them (NCP's reference code: 6)",
    "threads": "torch threads for the run (default: torch's; small CPU runs are often fastest with 1); may differ "
               "on --resume",
    "iterations": "total iterations; with --resume a larger value M extends the run, also a finished one: the "
                  "cosine LR schedule is re-planned over M, so step t gets the LR a run planned for M from the start "
                  "has at step t (a finished run at lr_min rises again, then decays to lr_min at M)",
    "lr": "initial learning rate, in (0, 1]",
    "lr_min": "final learning rate of the cosine schedule, in [0, 1]",
    "alpha": f"CRP concentration of the training data, in [{HYPER_RANGE[0]:g}, {HYPER_RANGE[1]:g}]",
    "sigma_mu": f"prior std of the cluster means, in [{HYPER_RANGE[0]:g}, {HYPER_RANGE[1]:g}]",
    "sigma_x": f"std of the points around their cluster mean, in [{HYPER_RANGE[0]:g}, {HYPER_RANGE[1]:g}]",
    "device": "auto, cpu, cuda, cuda:N or mps",
}


_TYPES = {"seed": seed_value, "alpha": hyper_parameter, "sigma_mu": hyper_parameter, "sigma_x": hyper_parameter,
          "lr": float_between(0.0, 1.0, low_open=True), "lr_min": float_between(0.0, 1.0, low_open=False)}
"""argparse types of the train flags that need more than a finite number."""


def _scale(text: str):
    if text in ("auto", "none"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"the scale must be a positive finite number, got {text!r}")
    return value


def _pretrained(spec: str) -> tuple[str, str] | None:
    """``(NAME, OBJECTIVE)`` of a shipped model's spec (``pretrained:NAME:OBJECTIVE``, ``NAME``, ...),
    ``None`` for a path (:func:`gfncp_pyro.loading.parse_shipped`)."""
    from .loading import parse_shipped

    try:
        return parse_shipped(spec)
    except ValueError as err:
        raise UserError(str(err)) from None


def _train_pool(args, config: TrainConfig):
    """The data pool of an image/embedding run, read once; with ``--labels`` (``.npy`` features)
    features and labels are stored together as ``OUT/data.npz``, the run's ``data_path`` (so
    ``evaluate`` and ``--resume`` find them). Embedding runs take the network's input size from
    the features when ``--x-dim`` is not given. Returns ``(config, pool or None)``."""
    from .data.embeddings import load_embeddings, save_embeddings
    from .data.sources import load_pool

    if args.labels is not None and (not isinstance(config.data, EmbeddingData) or args.data is None
                                    or Path(args.data).suffix != ".npy"):
        raise UserError("--labels goes with .npy features: --data FEATURES.npy --labels LABELS.npy and an embeddings "
                        "preset (e.g. --preset embeddings-cpu)")
    if config.data.is_mixture or config.data.path is None:
        return config, None
    if args.labels is not None:
        pool = load_embeddings(args.data, args.labels)
        combined = Path(args.out) / "data.npz"
        save_embeddings(combined, pool.points, pool.labels)
        config = config.replace(data_path=str(combined))
        print(f"features {args.data} and labels {args.labels} stored together in {combined} (the run's data)",
              file=sys.stderr)
    else:
        pool = load_pool(config)
    if isinstance(config.data, EmbeddingData) and args.x_dim is None and tuple(pool.point_shape) != tuple(config.point_shape):
        width = int(pool.point_shape[0])
        print(f"the features of {config.data.path} are {width}-d: the network's input size is {width} (the preset's "
              f"default is {config.dim}; --x-dim sets it)", file=sys.stderr)
        config = config.replace(net_x_dim=width)
    return config, pool


def _train(args) -> int:
    from .train import NonFiniteLossError, Trainer, init_distributed, resolve_device

    out = Path(args.out)
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
    if (out / "last.pt").exists() and not args.resume:
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    config = _resumed_config(args, out, overrides) if args.resume and (out / "last.pt").exists() else \
        preset(args.preset or "mog2d-small", **overrides)
    resolve_device(config.runtime.device)
    created = not out.exists()
    check_output_dir(out, "--out")
    try:
        config, pool = _train_pool(args, config)
        init_distributed()
        trainer = Trainer(config, out, resume=args.resume, progress=not args.no_progress, pool=pool)
        if trainer.rank == 0:
            write_atomic(out / "config.json", json.dumps(config.to_dict(), indent=2))
    except BaseException:
        if created:  # a run that never started leaves no directory behind
            _remove_new_run(out)
        raise
    if trainer.rank == 0:
        print(f"training {config.objective.name} ({config.preset}) on {trainer.device} into {out}, "
              f"world size {trainer.world}, from step {trainer.step} to {config.optim.iterations}", file=sys.stderr)
    try:
        result = trainer.fit()
    except NonFiniteLossError as err:
        raise UserError(str(err)) from None
    except (KeyboardInterrupt, UserError, CheckpointError):
        raise
    except Exception as err:
        if os.environ.get("GFNCP_TRACEBACK"):
            raise
        saved = trainer.last_saved
        raise _TrainingFailed(
            f"training failed at iteration {trainer.step} ({type(err).__name__}: {_one_line(err)[:300]}); "
            + (f"the last checkpoint is {saved} (continue with --resume)" if saved else "no checkpoint was saved yet")
            + "; set GFNCP_TRACEBACK=1 to see the traceback") from None
    if trainer.rank == 0:
        print(json.dumps(result))
    return 0


def _resumed_config(args, out: Path, overrides: dict) -> TrainConfig:
    """``--resume``: the run's own config (from ``OUT/last.pt``) with the flags given on the command
    line applied, so ``gfncp train --out RUN --resume --iterations M`` extends a run without
    repeating its flags; a flag that changes anything but ``--iterations`` is refused by the
    trainer (the saved and the requested values are named)."""
    saved = TrainConfig.from_dict(load_checkpoint(out / "last.pt")["config"])
    if args.preset is not None and args.preset != saved.preset:
        raise UserError(f"{out} holds a run of preset {saved.preset}, not {args.preset}; drop --preset to resume it")
    return saved.replace(**overrides) if overrides else saved


def _remove_new_run(out: Path) -> None:
    """Remove the files a refused fresh run wrote into the directory it created, then the directory."""
    for name in ("config.json", "data.npz", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:  # something else is in it: leave it
        pass


class _TrainingFailed(Exception):
    """Training stopped on an unexpected error (exit status 1)."""


def _model_name(spec: str, config: TrainConfig) -> str:
    name = config.objective.name.upper()
    return name if spec.startswith("pretrained:") else f"{name} ({Path(spec).parent.name or spec})"


def _evaluation_pool(args):
    if args.labels is None:
        return None
    if args.data is None or Path(args.data).suffix != ".npy":
        raise UserError("--labels goes with .npy features: --data FEATURES.npy --labels LABELS.npy")
    from .data.embeddings import load_embeddings

    return load_embeddings(args.data, args.labels)


def _evaluate(args) -> int:
    from .evaluation import evaluate

    if args.json:
        check_output_file(args.json, "--json")
    if args.figures:
        check_output_dir(args.figures, "--figures")
    pool = _evaluation_pool(args)
    reports, top_sets = {}, {}
    for spec in args.checkpoint:
        net, config = resolve_model(spec)
        if args.data is not None:
            if config.data.is_mixture:
                raise UserError(f"{spec} was trained on Gaussian mixtures; --data applies to image/embedding models")
            config = config.replace(data_path=args.data)
        source = None
        if not config.data.is_mixture or args.test_alpha is not None:
            from .data.sources import evaluation_source

            source = evaluation_source(config, pool=pool if isinstance(config.data, EmbeddingData) else None, alpha=args.test_alpha)
        report = evaluate(net, config, num_sets=args.sets, num_points=args.N, seed=args.seed, sdpp_sets=args.sdpp_sets,
                          sdpp_orders=args.sdpp_orders, progress=not args.no_progress, source=source,
                          keep_sets=1 if args.figures and isinstance(config.data, ImageData) else 0)
        report["checkpoint"] = spec
        report["objective"] = config.objective.name
        name = _model_name(spec, config)
        print(f"{name}: {spec}")
        for metric in ("nmi", "ari", "mc_paper", "mc_consistent", "sdpp"):
            if metric in report:
                r = report[metric]
                print(f"  {metric:<14} {r['mean']:.4f} ± {r['std']:.4f} (median {r['median']:.4f}, n={r['n']})")
        if "clusters_pred" in report:
            pred, true = report["clusters_pred"], report["clusters_true"]
            print(f"  {'clusters':<14} predicted {pred['mean']:.2f} vs true {true['mean']:.2f} (mean K over "
                  f"{pred['n']} sets; predicted/true {pred['mean'] / true['mean']:.2f})")
        if "sets" in report:
            top_sets[name] = (net, report.pop("sets")[0])
        reports[name] = report
    if args.figures:
        _evaluation_figures(reports, top_sets, Path(args.figures), args.N)
    if args.json:
        data = next(iter(reports.values())) if len(reports) == 1 else {"models": reports}
        write_atomic(args.json, json.dumps(data, indent=2))
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


def _input_scale(args, points: np.ndarray, net, config: TrainConfig) -> tuple[np.ndarray, str, dict]:
    """The points as the network sees them, a one-line description and the JSON record of the
    scale (``--scale``, :mod:`gfncp_pyro.scale`); warns on stderr when points used as given look
    off the model's scale."""
    from .scale import estimate_scale

    mog = config.data.is_mixture
    if args.scale == "auto" and not mog:
        raise UserError(f"--scale auto needs a model trained on Gaussian mixtures; {args.checkpoint} was trained on "
                        f"{config.data.name}, whose features must be computed as for its training data (--scale none)")
    if isinstance(args.scale, float):
        record = {"mode": "factor", "factor": args.scale, "centre": None}
        return points * args.scale, f"scale: points multiplied by {args.scale:g}", record
    estimate = None
    if mog and points.shape[0] >= 2 and args.scale in ("auto", None):
        estimate = estimate_scale(torch.as_tensor(points), net, config.mixture())
    if args.scale == "auto" and estimate is not None:
        centre = estimate.centre.numpy()
        record = {"mode": "auto", "factor": estimate.factor, "centre": centre.tolist()}
        return (estimate.factor * (points - centre), f"scale: auto, points centred at their median and multiplied "
                f"by {estimate.factor:.4g}", record)
    if estimate is not None and estimate.off_scale():
        print(f"gfncp cluster: warning: the points look off the model's scale (sigma_x = {config.model.sigma_x:g}, sigma_mu "
              f"= {config.model.sigma_mu:g}): --scale auto would centre them and multiply them by {estimate.factor:.3g}; "
              "pass --scale auto, a number, or --scale none to use them as given without this check", file=sys.stderr)
    note = " (one point: nothing to estimate)" if args.scale == "auto" else ""
    return points, "scale: none, points used as given" + note, {"mode": "none", "factor": 1.0, "centre": None}


def _cluster(args) -> int:
    from . import decoding

    start = time.perf_counter()
    # Decoding one set is a chain of small per-step operations: one thread is fastest, and on a
    # busy machine OpenMP's spin-waiting makes more threads many times slower.
    torch.set_num_threads(1)
    if args.output:
        check_output_file(args.output, "--output")
    if args.png:
        check_output_file(args.png, "--png", suffix=".png")
    points = read_points(args.input)
    net, config = resolve_model(args.checkpoint)
    if len(config.point_shape) != 1:
        raise UserError(f"{args.checkpoint} clusters images {config.point_shape}; gfncp cluster reads vector points "
                        "(N, D) (use gfncp evaluate for image models)")
    if points.shape[1] != config.dim:
        raise UserError(f"{args.input} has points of dimension {points.shape[1]}, but the model was trained on "
                        f"dimension {config.dim}")
    scaled, scale_text, scale_record = _input_scale(args, points, net, config)
    dtype = next(net.parameters()).dtype
    if not np.isfinite(scaled).all() or np.abs(scaled).max() > torch.finfo(dtype).max / 1e6:
        raise UserError(f"the points reach {np.abs(points).max():.3g} (times the scale): too large for the network's "
                        f"{dtype}; rescale them (--scale auto or a factor)")
    x = torch.as_tensor(scaled, dtype=dtype)
    with torch.no_grad():
        labels, log_prob = decoding.greedy(net, x)
        top_labels, top_log_prob = decoding.beam_search(net, x, beam_width=max(args.top_k, 8), top_k=args.top_k)
    result = {
        "labels": labels.tolist(), "log_prob": float(log_prob), "num_clusters": int(labels.max()) + 1,
        "decoding": "greedy, identity order", "scale": scale_record,
        "top": [{"labels": lab.tolist(), "log_prob": float(lp)} for lab, lp in zip(top_labels, top_log_prob)],
    }
    if not math.isfinite(result["log_prob"]):
        raise UserError(f"the network gives log q = {result['log_prob']} on these points; check the checkpoint and "
                        "the scale of the points (--scale auto)")
    if args.output:
        write_atomic(args.output, "".join(f"{int(v)}\n" for v in labels.tolist()))
    if args.png:
        from .figures import plot_point_clusterings

        panels = [(labels, f"greedy (written to --output), log q = {result['log_prob']:.2f}")]
        panels += [(lab, f"beam search #{i + 1}, log q = {float(lp):.2f}")
                   for i, (lab, lp) in enumerate(zip(top_labels, top_log_prob))]
        plot_point_clusterings(scaled, panels, args.png, title=f"{args.checkpoint}: {points.shape[0]} points, "
                               + scale_text.replace("scale: ", "scale "))
    elapsed = time.perf_counter() - start
    top = ", ".join(f"{t['log_prob']:.3f}" for t in result["top"])
    print(json.dumps(result) if args.json else
          f"{points.shape[0]} points -> {result['num_clusters']} clusters, log q = {result['log_prob']:.3f} "
          f"(greedy); top-{len(result['top'])} log q: {top}; {scale_text} [{elapsed:.2f} s]")
    return 0


def _info(args) -> int:
    from .pretrained import PRETRAINED_DIR

    shipped = _pretrained(args.checkpoint)
    state = load_checkpoint(PRETRAINED_DIR / ("-".join(shipped) + ".pt") if shipped else args.checkpoint)
    config = TrainConfig.from_dict(state["config"])
    params = sum(v.numel() for v in state["model"].values())
    print(f"gfncp-pyro checkpoint (format {state['format_version']}, written by {state['package_version']})")
    flow = f", flow {config.objective.flow}" if hasattr(config.objective, "flow") else ""
    print(f"objective {config.objective.name}{flow}, preset {config.preset}, step {state.get('step')}, "
          f"best validation loss {state.get('best_val')}, {params:,} parameters")
    init = state.get("init")
    if isinstance(init, dict):
        print(f"warm start from {init.get('path')} (step {init.get('step')}, {init.get('objective')}, preset "
              f"{init.get('preset')}, sha256 {init.get('sha256')})")
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def _train_parser(sub) -> None:
    train = sub.add_parser("train", help="train GFNCP or NCP (Algorithm 1)")
    train.add_argument("--preset", default=None, choices=sorted(PRESETS),
                       help="the settings to start from (default: mog2d-small; with --resume: the run's own)")
    train.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out exactly, with its own "
                       "settings (flags need not be repeated; one that changes a setting is refused); with a larger "
                       "--iterations: extend it")
    train.add_argument("--labels", default=None, help="with --data FEATURES.npy: the (n,) class ids, a .npy file")
    train.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA")
    train.add_argument("--online", action="store_true", help="online mode (App. C): the energy ignores "
                       "unassigned points (U = 0), so points can arrive one by one")
    train.add_argument("--supervised", action="store_true",
                       help="image/embedding data: train on true classes instead of instance discrimination")
    train.add_argument("--detach-reward", action=argparse.BooleanOptionalAction, default=None,
                       help="balance=variance: the rewards enter the balance term without gradient (default: on)")
    train.add_argument("--no-progress", action="store_true")
    for flag, (_, kind) in _OVERRIDES.items():
        kind = _TYPES.get(flag, finite_number if kind is float else kind)
        train.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, default=None,
                           help=_HELP.get(flag, f"override the preset's {flag}"))
    train.set_defaults(func=_train)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gfncp", description="Order-consistent amortized clustering (GFNCP, NCP).")
    parser.add_argument("--version", action="version", version=f"gfncp-pyro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _train_parser(sub)

    ev = sub.add_parser("evaluate", help="the paper's protocol: greedy NMI, ARI, MC, SDPP")
    ev.add_argument("checkpoint", nargs="+", help="checkpoint path(s) or pretrained:NAME:OBJECTIVE (several: "
                    "compared on the same test sets)")
    ev.add_argument("--sets", type=int_at_least(1), default=3000)
    ev.add_argument("--N", type=int_at_least(1), default=300)
    ev.add_argument("--seed", type=seed_value, default=12345)
    ev.add_argument("--sdpp-sets", type=int_at_least(0), default=20)
    ev.add_argument("--sdpp-orders", type=int_at_least(1), default=500)
    ev.add_argument("--data", default=None, help="image/embedding models: read the data from here instead of the "
                    "path they were trained with (same split)")
    ev.add_argument("--labels", default=None, help="with --data FEATURES.npy: the (n,) class ids, a .npy file")
    ev.add_argument("--test-alpha", type=hyper_parameter, default=None, help="CRP concentration of the test partitions "
                    "(default: the training alpha)")
    ev.add_argument("--figures", default=None, help="directory for sdpp.png (histogram + ECDF) and, for image "
                    "models, top3_*.png")
    ev.add_argument("--json", default=None, help="write the report here (one model: its report; several: "
                    '{"models": {name: report}})')
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_evaluate)

    cl = sub.add_parser("cluster", help="cluster the points of a CSV, .npy or .npz file")
    cl.add_argument("checkpoint", help="checkpoint path or pretrained:NAME:OBJECTIVE")
    cl.add_argument("--input", required=True, help="points (N, D): .csv without header, .npy, or .npz")
    cl.add_argument("--top-k", type=int_at_least(1), default=3)
    cl.add_argument("--scale", type=_scale, default=None, help="auto (centre, then the factor of maximum evidence "
                    "under the model's generative model), none, or a factor; default: none, with a warning when "
                    "the points look off the model's scale")
    cl.add_argument("--output", default=None, help="write the greedy labels here, one per line")
    cl.add_argument("--png", default=None, help="draw the greedy partition (the one in --output) and the beam-search "
                    "top-k (2-D PCA projection for D > 2)")
    cl.add_argument("--json", action="store_true", help="print the result as JSON")
    cl.set_defaults(func=_cluster)

    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("checkpoint", help="checkpoint path or pretrained:NAME:OBJECTIVE")
    info.set_defaults(func=_info)
    return parser


def _run(args) -> int:
    try:
        return args.func(args)
    except (UserError, CheckpointError, ValueError) as err:
        print(f"gfncp {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except _TrainingFailed as err:
        print(f"gfncp {args.command}: error: {err}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_interruptible(lambda: _run(args), f"gfncp {args.command}")


if __name__ == "__main__":
    sys.exit(main())
