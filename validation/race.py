"""``python -m validation.race --N 8``: amortized inference against collapsed Gibbs, by the clock.

On the same seeded data sets of the CRP mixture (Eq. (1) in [1], drawn as ``validation.exact``
draws them), in one process with one thread, four samplers of the posterior over partitions run
at growing budgets:

* ``gfncp_is`` / ``ncp_is``: self-normalised importance sampling with the trained network's
  ``q(c | x)`` as proposal (:func:`gfncp_pyro.infer.importance`), ``S`` samples;
* ``gfncp_mh``: independence Metropolis-Hastings with the same proposal
  (:func:`gfncp_pyro.infer.independence_mh`), ``S`` states after a burn-in of ``S // 10``;
* ``gibbs``: collapsed Gibbs (Neal's Algorithm 3, :mod:`gfncp_pyro.mcmc`) with ``C`` chains,
  all states after the burn-in sweeps kept, read after ``T`` sweeps.

Each budget is timed on its own (wall clock, ``time.perf_counter``) and scored against the exact
posterior: total variation over all Bell(N) partitions for ``N <= 12`` (enumeration,
:mod:`gfncp_pyro.exact`), the mean absolute error of the off-diagonal co-clustering matrix for
larger ``N`` (subset DP, :mod:`gfncp_pyro.subset_dp`). Timed: the sampler and the weights; not
timed: loading the networks, one warm-up call per method, the exact reference and the scoring.
The networks' training time is excluded and stated separately, from their training logs
(``elapsed_s`` in ``*.metrics.jsonl``).

Outputs: a table, ``race_N{N}.png`` (median metric over data sets against median seconds, log
time axis) in ``--out``, and with ``--json`` the report
``{"N", "datasets", "methods": {name: {"seconds_to_tv": {"0.1": s|null, "0.05": s|null, "0.02": s|null},
"curve": [[seconds, median_tv], ...]}}, ...}`` (``seconds_to_mae`` with thresholds 0.05, 0.02,
0.01, 0.005 and 0.002 for ``N >= 13``: a co-clustering MAE is small next to a TV, and at N = 16
the first two are met by a few dozen proposals).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] R. M. Neal. Markov chain sampling methods for Dirichlet process mixture models. JCGS 2000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gfncp_pyro.checkpoint import CheckpointError
from gfncp_pyro.commands import UserError
from gfncp_pyro.loading import resolve_model
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.guides import GFNCPGuide
from gfncp_pyro.infer import PartitionTable, co_clustering, importance, independence_mh, posterior_table, total_variation
from gfncp_pyro.mcmc import CollapsedGibbs
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.outputs import write_atomic, write_atomic_with
from gfncp_pyro.partitions import MAX_ENUMERATION_N
from gfncp_pyro.subset_dp import MAX_DP_N, subset_posterior

__all__ = ["main", "run_race", "METHODS"]

METHODS = ("gfncp_is", "ncp_is", "gfncp_mh", "gibbs")
TV_THRESHOLDS = ("0.1", "0.05", "0.02")
MAE_THRESHOLDS = ("0.05", "0.02", "0.01", "0.005", "0.002")
COLORS = {"gfncp_is": "#dd8452", "ncp_is": "#4c72b0", "gfncp_mh": "#c44e52", "gibbs": "#55a868"}
LABELS = {"gfncp_is": "GFNCP + IS", "ncp_is": "NCP + IS", "gfncp_mh": "GFNCP + MH", "gibbs": "collapsed Gibbs"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m validation.race", description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=8, help=f"points per data set (2..{MAX_DP_N}; DP beyond {MAX_ENUMERATION_N})")
    p.add_argument("--datasets", type=int, default=10, help="number of seeded data sets")
    p.add_argument("--seed", type=int, default=0, help="seed of the data sets (and, +1, of all sampling)")
    p.add_argument("--gfncp", default="pretrained:mog2d-small:gfncp", help="GFNCP checkpoint")
    p.add_argument("--ncp", default="pretrained:mog2d-small:ncp", help="NCP checkpoint")
    p.add_argument("--max-samples", type=int, default=3000, help="largest IS / MH sample count")
    p.add_argument("--chains", type=int, default=64, help="Gibbs chains C")
    p.add_argument("--burn-in", type=int, default=5, help="Gibbs sweeps discarded first")
    p.add_argument("--max-sweeps", type=int, default=300, help="Gibbs sweeps after the burn-in")
    p.add_argument("--out", type=Path, default=Path("out/race"), help="directory of the PNG")
    p.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    return p


def _grid(largest: int, start: int) -> list[int]:
    """About three budgets per decade (1, 2, 5 steps) from ``start`` up to ``largest``."""
    out, decade = [], 1
    while decade <= largest:
        out += [v for v in (decade, 2 * decade, 5 * decade) if start <= v <= largest]
        decade *= 10
    return out if out and out[-1] == largest else out + [largest]


def training_seconds(spec: str) -> dict:
    """Training time of a checkpoint from its log: total ``elapsed_s`` and that of the saved step
    (the clock of a resumed run restarts at 0; its segments are added up)."""
    if spec.startswith("pretrained:"):
        from gfncp_pyro.pretrained import PRETRAINED_DIR

        _, name, objective = spec.split(":")
        log, ckpt = PRETRAINED_DIR / f"{name}-{objective}.metrics.jsonl", PRETRAINED_DIR / f"{name}-{objective}.pt"
    else:
        ckpt = Path(spec)
        log = ckpt.parent / "metrics.jsonl"
    if not log.is_file():
        return {"log": None, "total_s": None, "to_saved_step_s": None}
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "elapsed_s" in r and "step" in r]
    offset, previous = 0.0, 0.0  # a resumed run restarts its clock: add the segments up
    for r in rows:
        if r["elapsed_s"] < previous:
            offset += previous
        previous = r["elapsed_s"]
        r["elapsed_s"] += offset
    try:
        from gfncp_pyro.checkpoint import load_checkpoint

        saved = int(load_checkpoint(ckpt).get("step"))
    except Exception:  # noqa: BLE001 - provenance only; the log total still stands
        saved = None
    at_saved = [r["elapsed_s"] for r in rows if saved is not None and r["step"] <= saved]
    return {"log": log.name, "steps": rows[-1]["step"] if rows else None,
            "total_s": rows[-1]["elapsed_s"] if rows else None, "saved_step": saved,
            "to_saved_step_s": at_saved[-1] if at_saved else None}


class _Reference:
    """The exact posterior of one set and the error of an estimate against it."""

    def __init__(self, x: torch.Tensor, mixture: CRPMixture):
        n = x.shape[0]
        self.use_dp = n > MAX_ENUMERATION_N
        if self.use_dp:
            self.coclustering = subset_posterior(x, mixture.alpha, likelihood=mixture.likelihood).coclustering()
            self.off = ~torch.eye(n, dtype=torch.bool)
        else:
            exact = exact_posterior(x, mixture.alpha, likelihood=mixture.likelihood)
            self.table = PartitionTable(exact.labels, exact.log_posterior)

    def error(self, labels: torch.Tensor, log_weights: torch.Tensor) -> float:
        log_weights = log_weights.double()
        if self.use_dp:
            estimate = co_clustering(labels, log_weights)
            return float((estimate - self.coclustering)[self.off].abs().mean())
        return total_variation(self.table, posterior_table(labels, log_weights))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _race_guide(method, guide, mixture, x, reference, budgets, generator) -> list[tuple[float, float]]:
    points = []
    for s in budgets:
        if method.endswith("_is"):
            seconds, r = _timed(lambda: importance(mixture, guide, x, s, generator=generator))
            labels, log_w = r.labels, r.log_weights
        else:
            seconds, r = _timed(lambda: independence_mh(mixture, guide, x, s, burn_in=s // 10, generator=generator))
            labels, log_w = r.labels, torch.zeros(r.labels.shape[0], dtype=torch.float64)
        points.append((seconds, reference.error(labels, log_w)))
    return points


def _race_gibbs(mixture, x, reference, args, checkpoints, generator) -> list[tuple[float, float]]:
    """One run of ``burn_in + max(checkpoints)`` sweeps; the clock stops while scoring."""
    clock, points, kept = 0.0, [], []
    seconds, chains = _timed(lambda: CollapsedGibbs(x, mixture.alpha, mixture.likelihood, args.chains,
                                                    generator=generator))
    clock += seconds
    for _ in range(args.burn_in):
        clock += _timed(chains.sweep)[0]
    for t in range(1, max(checkpoints) + 1):
        seconds, state = _timed(lambda: (chains.sweep(), chains.state())[1])
        clock += seconds
        kept.append(state)
        if t in checkpoints:
            labels = torch.cat(kept)
            points.append((clock, reference.error(labels, torch.zeros(labels.shape[0], dtype=torch.float64))))
    return points


def _summarise(per_set: list[list[tuple[float, float]]], budgets: list[int], thresholds) -> dict:
    curve = [[statistics.median(run[j][0] for run in per_set), statistics.median(run[j][1] for run in per_set)]
             for j in range(len(budgets))]
    first = {t: next((s for s, e in curve if e <= float(t)), None) for t in thresholds}
    return {"curve": curve, "budgets": budgets, "first": first}


def _check_args(args) -> None:
    if not 2 <= args.N <= MAX_DP_N:
        raise UserError(f"--N must lie in 2..{MAX_DP_N}, got {args.N}")
    for flag in ("datasets", "max_samples", "chains", "max_sweeps"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.burn_in < 0:
        raise UserError(f"--burn-in must be >= 0, got {args.burn_in}")


def _load_guides(args, mixture_of) -> tuple[dict, CRPMixture, dict]:
    guides, training, mixture = {}, {}, None
    for name, spec in (("gfncp", args.gfncp), ("ncp", args.ncp)):
        net, config = resolve_model(spec)
        if not config.data.is_mixture or config.dim != 2:
            raise UserError(f"{spec} was trained on {config.data.name} in dimension {config.dim}; the race needs a "
                            "2-D Gaussian-mixture model such as pretrained:mog2d-small:gfncp")
        here = mixture_of(config)
        if mixture is None:
            mixture = here
        elif (here.alpha, here.sigma_mu, here.sigma_x) != (mixture.alpha, mixture.sigma_mu, mixture.sigma_x):
            raise UserError(f"{args.gfncp} and {args.ncp} were trained for different model hyper-parameters")
        guides[name] = GFNCPGuide(mixture, net)
        training[name] = {"checkpoint": spec, **training_seconds(spec)}
    return guides, mixture, training


def _machine() -> str:
    """CPU model, cores, torch version and threads (provenance of the timings)."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
            f"Python {platform.python_version()}")


def run_race(args) -> dict:
    """Run the race described in the module docstring; returns the JSON report."""
    _check_args(args)
    torch.set_num_threads(1)
    guides, mixture, training = _load_guides(args, lambda c: c.model.mixture(2))
    xs = mixture.sample_batch(torch.full((args.datasets,), args.N), torch.Generator().manual_seed(args.seed),
                              dtype=torch.float64).x
    generator = torch.Generator().manual_seed(args.seed + 1)
    samples, sweeps = _grid(args.max_samples, 10), _grid(args.max_sweeps, 1)
    for method in ("gfncp_is", "ncp_is", "gfncp_mh"):  # warm-up, not timed
        guide = guides[method.split("_")[0]]
        (importance if method.endswith("_is") else independence_mh)(mixture, guide, xs[0], 10, generator=generator)
    CollapsedGibbs(xs[0], mixture.alpha, mixture.likelihood, args.chains, generator=generator).sweep()
    runs: dict[str, list] = {m: [] for m in METHODS}
    for i in range(args.datasets):
        reference = _Reference(xs[i], mixture)
        for method in ("gfncp_is", "ncp_is", "gfncp_mh"):
            runs[method].append(_race_guide(method, guides[method.split("_")[0]], mixture, xs[i], reference, samples,
                                            generator))
        runs["gibbs"].append(_race_gibbs(mixture, xs[i], reference, args, set(sweeps), generator))
        print(f"data set {i + 1}/{args.datasets} done", file=sys.stderr, flush=True)
    use_dp = args.N > MAX_ENUMERATION_N
    key, thresholds = ("seconds_to_mae", MAE_THRESHOLDS) if use_dp else ("seconds_to_tv", TV_THRESHOLDS)
    methods = {}
    for method in METHODS:
        s = _summarise(runs[method], sweeps if method == "gibbs" else samples, thresholds)
        methods[method] = {key: s["first"], "curve": s["curve"],
                           ("sweeps" if method == "gibbs" else "samples"): s["budgets"]}
    return {
        "N": args.N, "datasets": args.datasets, "seed": args.seed,
        "metric": "coclustering_mae" if use_dp else "tv",
        "reference": "subset DP" if use_dp else "enumeration",
        "model": {"alpha": mixture.alpha, "sigma_mu": mixture.sigma_mu, "sigma_x": mixture.sigma_x, "dim": 2},
        "settings": {"threads": torch.get_num_threads(), "chains": args.chains, "burn_in_sweeps": args.burn_in,
                     "mh_burn_in": "S // 10", "timed": "sampler and weights only (median over data sets)"},
        "training_excluded": training,
        "machine": _machine(),
        "methods": methods,
    }


def plot_race(report: dict, path: Path) -> None:
    """Median error against median seconds, one curve per method, log-log axes."""
    from matplotlib.figure import Figure  # outside pyplot: no global backend switch

    dp = report["metric"] != "tv"
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for name, m in report["methods"].items():
        curve = m["curve"]
        ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-", ms=3, color=COLORS[name], label=LABELS[name])
    for t in (MAE_THRESHOLDS if dp else TV_THRESHOLDS):
        ax.axhline(float(t), color="#999999", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds per data set (median, 1 thread; training excluded)")
    ax.set_ylabel("median co-clustering MAE" if dp else "median TV to the exact posterior")
    ax.set_title(f"N = {report['N']}, {report['datasets']} data sets ({report['reference']} reference)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic_with(path, lambda handle: fig.savefig(handle, format="png", dpi=120), "wb")


def _print(report: dict) -> None:
    key = "seconds_to_mae" if report["metric"] != "tv" else "seconds_to_tv"
    print(f"N = {report['N']}, {report['datasets']} data sets, metric {report['metric']} ({report['reference']})")
    for name, m in report["methods"].items():
        reach = "  ".join(f"{report['metric']}<={t}: " + (f"{s:.4g} s" if s is not None else "never")
                          for t, s in m[key].items())
        last = m["curve"][-1]
        print(f"  {LABELS[name]:<16} {reach}   (largest budget: {last[0]:.3g} s, {last[1]:.4f})")
    for name, t in report["training_excluded"].items():
        print(f"  training of {name} (excluded): {t.get('total_s')} s in total, {t.get('to_saved_step_s')} s "
              f"to the saved step {t.get('saved_step')}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for target in [args.out] + ([args.json.parent] if args.json is not None else []):
            target.mkdir(parents=True, exist_ok=True)
        report = run_race(args)
        report["command"] = "python -m validation.race " + " ".join(sys.argv[1:] if argv is None else argv)
        _print(report)
        plot_race(report, args.out / f"race_N{args.N}.png")
        print(f"wrote {args.out / f'race_N{args.N}.png'}")
        if args.json is not None:
            write_atomic(args.json, json.dumps(report, indent=2))
            print(f"wrote {args.json}")
    except (ValueError, CheckpointError, UserError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
