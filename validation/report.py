"""The body of ``python -m validation.exact``: data, exact posteriors, model comparisons, outputs."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from gfncp_pyro import decoding, metrics, policy
from gfncp_pyro.cli import UserError, check_network_outputs
from gfncp_pyro.config import preset
from gfncp_pyro.distributions import ChineseRestaurantProcess
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.loading import ModelMismatchError, check_model, load_pretrained, model_for
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.outputs import check_output_dir, check_output_file, write_atomic
from gfncp_pyro.partitions import MAX_ENUMERATION_N, bell_number
from gfncp_pyro.subset_dp import MAX_DP_N, subset_posterior

from .compare import compare_one
from .plots import plot_ecdfs, plot_top_partitions

__all__ = ["run_validation", "compare_dp", "format_table"]

HEADLINE = ["tv", "tv_orders", "kl_pq", "kl_qp", "js", "entropy_q", "reward_tv", "reward_kl_pq", "entropy_reward",
            "map_agreement", "q_mass_on_top10", "sdpp_map", "mc_true_paper", "mc_true_consistent", "mc_true_offset",
            "mc_true_state",
            "is_log_evidence_error", "is_ess", "is_tv"]
DP_HEADLINE = ["coclustering_mae", "is_coclustering_mae", "reward_coclustering_mae", "map_agreement", "sdpp_map",
               "is_log_evidence_error", "is_ess", "reward_is_ess"]


def compare_dp(net, x: torch.Tensor, dp, mixture: CRPMixture, num_importance: int, sdpp_orders: int,
               generator: torch.Generator) -> dict:
    """Metrics against the subset DP (N beyond enumeration): co-clustering and evidence."""
    dtype = next(net.parameters()).dtype
    n = x.shape[0]
    samples, log_q = decoding.sample(net, x.to(dtype), num_importance, generator=generator)
    crp = ChineseRestaurantProcess(torch.tensor(mixture.alpha, dtype=torch.float64), n)
    log_joint = crp.log_prob(samples) + mixture.likelihood.log_marginal(x.double(), samples)
    log_w = log_joint - log_q.double()
    w = torch.softmax(log_w, 0)
    same = (samples.unsqueeze(-1) == samples.unsqueeze(-2)).double()
    exact_cc = dp.coclustering()
    off = ~torch.eye(n, dtype=torch.bool)
    with torch.no_grad():  # the learned reward by self-normalised IS, q as proposal (gfncp_pyro.reward)
        encodings = policy.encode_points(net, x.to(dtype).unsqueeze(0))
        expanded = policy.Encodings(encodings.h.expand(num_importance, -1, -1),
                                    encodings.u.expand(num_importance, -1, -1))
        log_r = -policy.partition_energy(net, expanded, samples).double()
    w_r = torch.softmax(log_r - log_q.double(), 0)
    greedy, _ = decoding.greedy(net, x.to(dtype))
    map_labels, _ = dp.map_partition()
    with torch.no_grad():
        sdpp = metrics.sdpp(net, x.to(dtype), map_labels, sdpp_orders,
                           generator=int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    return {
        "coclustering_mae": float((same.mean(0) - exact_cc)[off].abs().mean()),
        "is_coclustering_mae": float(((w[:, None, None] * same).sum(0) - exact_cc)[off].abs().mean()),
        "reward_coclustering_mae": float(((w_r[:, None, None] * same).sum(0) - exact_cc)[off].abs().mean()),
        "reward_is_ess": float(1.0 / w_r.square().sum()),
        "map_agreement": float(torch.equal(greedy, map_labels)),
        "sdpp_map": float(sdpp.value),
        "is_log_evidence_error": float(torch.logsumexp(log_w, 0) - math.log(num_importance) - dp.log_evidence),
        "is_ess": float(1.0 / w.square().sum()),
    }


DEFAULT_PRESET = "mog2d-small"
"""The model validated when no checkpoint gives one (``--no-models``)."""

_SPEC = ("alpha", "sigma_mu", "sigma_x", "dim")


def _differences(first: CRPMixture, second: CRPMixture) -> str:
    names = {"dim": "dimension"}
    return ", ".join(f"{names.get(k, k)} {getattr(first, k)} vs {getattr(second, k)}" for k in _SPEC
                     if not math.isclose(float(getattr(first, k)), float(getattr(second, k)), rel_tol=1e-9))


def _models(args, requested: dict) -> tuple[dict, CRPMixture]:
    """Load the models and the CRP mixture to validate on.

    The mixture is the one the checkpoints were trained for (their configs carry it); the two
    checkpoints must agree on it, and requested hyper-parameters (``--alpha`` ...) that differ
    from the training ones are an error (a warning with ``--force``). Without checkpoints the
    ``mog2d-small`` preset's mixture is used.

    :returns: ``({name: (network, config)}, mixture)``.
    """
    loaded = {}
    for name, spec in (("GFNCP", args.gfncp), ("NCP", args.ncp)):
        if args.no_models or spec == "none":
            continue
        try:
            net, trained, config = load_pretrained(spec)
        except ValueError as err:  # CheckpointError included
            raise UserError(str(err)) from None
        if trained is None:
            raise UserError(f"{name} checkpoint {spec} was trained on {config.data}; the exact validation needs a "
                            "Gaussian-mixture model (e.g. pretrained:mog2d-small:gfncp)")
        check_network_outputs(net, spec)
        loaded[name] = (spec, net, trained, config)
    if len(loaded) == 2:
        (a, (spec_a, _, first, _)), (b, (spec_b, _, second, _)) = loaded.items()
        differ = _differences(first, second)
        if differ and (not args.force or first.dim != second.dim):
            raise UserError(f"the {a} checkpoint {spec_a} and the {b} checkpoint {spec_b} were trained for different "
                            f"models ({a} vs {b}: {differ}); give checkpoints of the same model"
                            + ("" if first.dim != second.dim else ", or pass --force to run them anyway"))
    base = next(iter(loaded.values()))[2] if loaded else model_for(preset(DEFAULT_PRESET))
    hyper = {k: (v if v is not None else getattr(base, k)) for k, v in requested.items()}
    mixture = CRPMixture(hyper["alpha"], hyper["sigma_mu"], hyper["sigma_x"], dim=base.dim)
    for name, (spec, net, trained, config) in loaded.items():
        if trained.dim != mixture.dim:
            raise UserError(f"{name} checkpoint {spec} was trained for dimension {trained.dim}, the validation uses "
                            f"{mixture.dim}")
        try:
            check_model(mixture, config, force=args.force, what=f"{name} checkpoint {spec}")
        except ModelMismatchError as err:
            raise UserError(f"{err} (here: pass --force)") from None
    return {name: (net, config) for name, (_, net, _, config) in loaded.items()}, mixture


def _load_data(args, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    path = args.data
    if not path.is_file():
        raise UserError(f"--data file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UserError(f"--data {path} is not a readable .npy array ({err})") from None
    if x.ndim != 2 or x.shape[1] != dim or not 1 <= x.shape[0] <= MAX_DP_N:
        raise UserError(f"--data must hold points of shape (N, {dim}) (the model's dimension) with "
                        f"1 <= N <= {MAX_DP_N}, got {x.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"--data {path} contains NaN or infinite values")
    return torch.as_tensor(x, dtype=torch.float64)[None], None


def _summary(values: list[float]) -> dict:
    """Mean, sample std and median; with infinite values (an IS error or a divergence of a q that
    underflowed) the mean and median follow them and the std is NaN."""
    if not all(math.isfinite(v) for v in values):
        array = np.asarray(values, dtype=np.float64)
        return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(values) > 1 else 0.0,
                "median": float(np.median(array))}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "median": statistics.median(values)}


def _refuse_nan(name: str, spec: str, index: int, result: dict) -> dict:
    """A model's metrics on one data set; NaN (outputs of the network that are not numbers) is a
    one-line error naming the checkpoint, the metric and the data set."""
    bad = [key for key, value in result.items() if isinstance(value, float) and math.isnan(value)]
    if bad:
        raise UserError(f"{name} checkpoint {spec} gives NaN {', '.join(bad[:4])} on data set {index}: its network's "
                        "outputs are not finite there (weights that overflow?); use another checkpoint")
    return result


def run_validation(args) -> int:
    """The validation of ``args`` (parsed by :mod:`validation.exact`); the output paths are
    checked before any work and the JSON report is written atomically.

    :raises UserError, ValueError: user mistakes (``OutputPathError`` for an output path that
        cannot be written), reported in one line by :func:`validation.exact.main`.
    """
    if args.json is not None:
        check_output_file(args.json, "--json")
    check_output_dir(args.out, "--out")
    if args.datasets < 1 or args.orders < 0 or args.importance < 1 or args.sdpp_orders < 1:
        raise UserError("--datasets, --importance and --sdpp-orders must be >= 1 and --orders >= 0")
    requested = {"alpha": args.alpha, "sigma_mu": args.sigma_mu, "sigma_x": args.sigma_x}
    models, mixture = _models(args, requested)
    hyper = {k: getattr(mixture, k) for k in requested}
    if args.data is not None:
        xs, truth = _load_data(args, mixture.dim)
    else:
        if not 1 <= args.N <= MAX_DP_N:
            raise UserError(f"--N must lie in 1..{MAX_ENUMERATION_N} (enumeration) or up to {MAX_DP_N} with --dp, "
                            f"got {args.N}")
        batch = mixture.sample_batch(torch.full((args.datasets,), args.N), torch.Generator().manual_seed(args.seed),
                                     dtype=torch.float64)
        xs, truth = batch.x, batch.labels
    n = xs.shape[1]
    use_dp = args.dp or n > MAX_ENUMERATION_N
    if n > MAX_ENUMERATION_N and not args.dp:
        raise UserError(f"N={n} has Bell({n}) = {bell_number(n):.3g} partitions, beyond enumeration "
                        f"(N <= {MAX_ENUMERATION_N}); add --dp for the subset dynamic programme (N <= {MAX_DP_N})")
    generator = torch.Generator().manual_seed(args.seed + 1)
    specs = {"GFNCP": args.gfncp, "NCP": args.ncp}
    per_model: dict[str, list[dict]] = {name: [] for name in models}
    exact_rows, cases = [], []
    start = time.perf_counter()
    for i in tqdm(range(xs.shape[0]), disable=args.no_progress, desc="data sets", dynamic_ncols=True):
        x = xs[i]
        t_true = truth[i] if truth is not None else None
        if use_dp:
            dp = subset_posterior(x, mixture.alpha, likelihood=mixture.likelihood)
            exact_rows.append({"log_evidence": float(dp.log_evidence)})
            for name, (net, _) in models.items():
                result = compare_dp(net, x, dp, mixture, args.importance, args.sdpp_orders, generator)
                per_model[name].append(_refuse_nan(name, specs[name], i, result))
            continue
        exact = exact_posterior(x, mixture.alpha, likelihood=mixture.likelihood)
        row = {"log_evidence": float(exact.log_evidence), "entropy": exact.entropy}
        if t_true is not None:
            row["map_is_true"] = float(torch.equal(exact.labels[int(exact.log_posterior.argmax())], t_true))
        exact_rows.append(row)
        orders = torch.stack([torch.randperm(n, generator=generator) for _ in range(args.orders)]) \
            if args.orders else torch.zeros((0, n), dtype=torch.long)
        log_q = {}
        for name, (net, _) in models.items():
            result = compare_one(net, x, exact, t_true if t_true is not None else exact.labels[0], orders,
                                 args.importance, args.sdpp_orders, generator)
            log_q[name] = result.pop("log_q")
            if t_true is None:
                for key in [k for k in result if k.startswith("mc_true_")]:
                    result.pop(key)
            per_model[name].append(_refuse_nan(name, specs[name], i, result))
        if len(cases) < 3:
            cases.append({"title": f"data set {i} (N={n}): exact posterior vs q(c|x) along the identity order",
                          "labels": exact.labels, "log_p": exact.log_posterior, "log_q": log_q})
    elapsed = time.perf_counter() - start
    report = {
        "N": n, "datasets": xs.shape[0], "seed": args.seed, "method": "subset DP" if use_dp else "enumeration",
        "model": {**hyper, "dim": mixture.dim}, "orders": args.orders, "importance_samples": args.importance,
        "sdpp_orders": args.sdpp_orders, "elapsed_s": elapsed,
        "checkpoints": {name: spec for name, spec in (("GFNCP", args.gfncp), ("NCP", args.ncp)) if name in models},
        "exact": {k: _summary([r[k] for r in exact_rows]) for k in exact_rows[0]},
        "models": {name: {k: _summary([r[k] for r in rows]) for k in rows[0]} for name, rows in per_model.items()},
        "per_dataset": {name: rows for name, rows in per_model.items()},
    }
    _print(report, use_dp)
    if models:
        if cases:
            plot_top_partitions(cases, args.out / f"top_partitions_N{n}.png")
        ecdf = {m: {name: [r[m] for r in rows] for name, rows in per_model.items()}
                for m in (("coclustering_mae", "sdpp_map") if use_dp else ("tv", "sdpp_map"))}
        plot_ecdfs(ecdf, args.out / f"ecdf_N{n}.png")
        print(f"wrote figures to {args.out}/")
    if args.json is not None:
        write_atomic(args.json, json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def format_table(header: list[str], rows: list[list[str]], gap: int = 2) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, each as wide
    as its widest cell, columns separated by at least ``gap`` spaces, so that cells never run
    together whatever the numbers' lengths."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines)


def _print(report: dict, use_dp: bool) -> None:
    print(f"\n{report['method']}: {report['datasets']} data set(s) of N={report['N']} from the CRP mixture "
          f"{report['model']}, seed {report['seed']} ({report['elapsed_s']:.1f} s)")
    exact = [[f"exact {key}", f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['median']:.4f}"]
             for key, s in report["exact"].items()]
    print(format_table(["", "mean", "std", "median"], exact))
    if not report["models"]:
        return
    names = list(report["models"])
    header = ["metric"] + [f"{name} {column}" for name in names for column in ("mean", "std", "median")]
    rows = []
    for metric in DP_HEADLINE if use_dp else HEADLINE:
        row = [metric]
        for name in names:
            s = report["models"][name].get(metric)
            row += [f"{s['mean']:.4g}", f"{s['std']:.3g}", f"{s['median']:.4g}"] if s else ["-", "-", "-"]
        rows.append(row)
    print()
    print(format_table(header, rows))
    sys.stdout.flush()
