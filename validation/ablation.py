"""The objective ablation of GFNCP against the exact posterior (``validation/results/ablation.md``).

Every configuration is the ``mog2d-small`` preset with the same iteration budget, seed and
fidelity panel; only the objective's fields differ. ``train`` runs one configuration with one
torch thread into ``OUT/NAME`` (resumable: rerun the same command), ``report`` scores every
finished run's ``best.pt`` with the exact validation and prints the markdown table::

    python -m validation.ablation list
    python -m validation.ablation train offset-nll --iterations 1500 --out runs/ablation
    python -m validation.ablation report --out runs/ablation --datasets 50
    python -m validation.ablation curves runs/final-gfncp runs/final-ncp --labels GFNCP NCP
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

CONFIGS: dict[str, dict] = {
    # The baseline and the two objectives shipped before this ablation.
    "ncp": dict(objective="ncp"),
    "paper-cd": dict(objective="gfncp", flow="paper", reward="cd", lambda_cd=0.4, delta=0.6),
    "consistent-nll": dict(objective="gfncp", flow="consistent", reward="nll", lambda_cd=1.0, delta=0.6),
    # No regulariser, a heavy likelihood (the most promising untested combination).
    "consistent-nll-l10-d0": dict(objective="gfncp", flow="consistent", reward="nll", lambda_cd=10.0, delta=0.0,
                                  gauge="none"),
    # Likelihood first (the NCP solution), then the MC loss annealed in.
    "consistent-nll-ramp": dict(objective="gfncp", flow="consistent", reward="nll", lambda_cd=1.0, delta=0.0,
                                gauge="none", mc_warmup=500, mc_ramp=500),
    # A label-free log-flow offset per state carries the per-step normaliser.
    "offset-nll": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none"),
    "offset-nll-first": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.1,
                             gauge="first"),
    "offset-nll-ramp": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                            mc_warmup=500, mc_ramp=500),
    "offset-tb": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                      delta=0.0, gauge="none"),
    "offset-nll-policy": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.0,
                              gauge="none", explore="policy", beta=0.5),
    "offset-cd": dict(objective="gfncp", flow="offset", reward="cd", lambda_cd=1.0, delta=0.0, gauge="none"),
    # Likelihood first, then trajectory balance annealed in.
    "offset-tb-ramp": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                           delta=0.0, gauge="none", mc_warmup=500, mc_ramp=500),
    "offset-tb-ramp-w0.1": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll",
                                lambda_cd=1.0, delta=0.0, gauge="none", mc_weight=0.1, mc_warmup=500,
                                mc_ramp=500),
    "consistent-tb-ramp": dict(objective="gfncp", flow="consistent", balance="trajectory", reward="nll",
                               lambda_cd=1.0, delta=0.0, gauge="none", mc_warmup=500, mc_ramp=500),
    # Likelihood first, then the offsets calibrated on the detached energies, then the MC gradient
    # into the energies ramped in.
    "offset-nll-calibrate": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.0,
                                 gauge="none", mc_warmup=400, mc_calibrate=200, mc_ramp=400),
    "offset-tb-calibrate": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll",
                                lambda_cd=1.0, delta=0.0, gauge="none", mc_warmup=400, mc_calibrate=200,
                                mc_ramp=400),
    # Lighter balance terms from the start.
    "offset-tb-w0.1": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                           delta=0.0, gauge="none", mc_weight=0.1),
    "offset-tb-w0.01": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                            delta=0.0, gauge="none", mc_weight=0.01),
    "offset-nll-w0.1": dict(objective="gfncp", flow="offset", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                            mc_weight=0.1),
    # A per-state log-flow offset from the parent state's features (label-dependent, shared by
    # the parent's children): detailed balance with free state flows.
    "state-nll": dict(objective="gfncp", flow="state", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none"),
    "state-nll-w0.1": dict(objective="gfncp", flow="state", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                           mc_weight=0.1),
    "state-nll-ramp": dict(objective="gfncp", flow="state", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                           mc_warmup=400, mc_calibrate=200, mc_ramp=400),
    # No exploration sets, or the policy's own samples instead of uniform partitions (at N = 32
    # uniform partitions have trajectory-balance residuals ~100x the data's).
    "state-nll-b1": dict(objective="gfncp", flow="state", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                         beta=1.0),
    "offset-tb-b1": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                         delta=0.0, gauge="none", beta=1.0),
    "state-nll-policy": dict(objective="gfncp", flow="state", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                             explore="policy", beta=0.75),
    "offset-tb-policy": dict(objective="gfncp", flow="offset", balance="trajectory", reward="nll", lambda_cd=1.0,
                             delta=0.0, gauge="none", explore="policy", beta=0.75),
    "consistent-nll-b1": dict(objective="gfncp", flow="consistent", reward="nll", lambda_cd=1.0, delta=0.0,
                              gauge="none", beta=1.0),
    # Trajectory balance with log Z optimised out: the variance of log q + E over trajectories of
    # the same set (the data partition along R orders and M policy samples).
    "variance-r2-m1": dict(objective="gfncp", balance="variance", balance_orders=2, balance_samples=1,
                           reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0),
    "variance-r4-m0": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=0,
                           reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0),
    "variance-r2-m2": dict(objective="gfncp", balance="variance", balance_orders=2, balance_samples=2,
                           reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0),
    "variance-r2-m1-w0.1": dict(objective="gfncp", balance="variance", balance_orders=2, balance_samples=1,
                                reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0, mc_weight=0.1),
    # The same with the reward detached in the balance term: the policy is distilled towards the
    # reward on its own samples, the reward learns from the likelihood along several orders.
    "variance-r4-m2-detached": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=2,
                                    detach_reward=True, reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                                    beta=1.0),
    "variance-r2-m2-detached": dict(objective="gfncp", balance="variance", balance_orders=2, balance_samples=2,
                                    detach_reward=True, reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                                    beta=1.0),
    "variance-r4-m2-detached-warm": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=2,
                                         detach_reward=True, reward="nll", lambda_cd=1.0, delta=0.0, gauge="none",
                                         beta=1.0, mc_warmup=400, mc_ramp=400),
    "variance-r8-m0": dict(objective="gfncp", balance="variance", balance_orders=8, balance_samples=0,
                           reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0),
    "variance-r4-m2-detached-warm-w0.1": dict(objective="gfncp", balance="variance", balance_orders=4,
                                              balance_samples=2, detach_reward=True, reward="nll", lambda_cd=1.0,
                                              delta=0.0, gauge="none", beta=1.0, mc_warmup=400, mc_ramp=400,
                                              mc_weight=0.1),
    # The likelihood along 4 orders per set and no balance term: what the extra orders alone do.
    "variance-r4-m0-w0": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=0,
                              reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0, mc_weight=0.0,
                              flow="consistent"),
    # Order consistency that only lifts the lagging orders (target: the best order, held fixed).
    "variance-r4-m0-max": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=0,
                               balance_target="max", reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0),
    "variance-r4-m0-w0.3": dict(objective="gfncp", balance="variance", balance_orders=4, balance_samples=0,
                                reward="nll", lambda_cd=1.0, delta=0.0, gauge="none", beta=1.0, mc_weight=0.3),
    "consistent-tb": dict(objective="gfncp", flow="consistent", balance="trajectory", reward="nll", lambda_cd=1.0,
                          delta=0.0, gauge="none"),
}


BASE = dict(flow="paper", balance="flow", reward="cd", delta=0.6, lambda_cd=0.4, gauge="final", beta=0.99,
            balance_orders=2, balance_samples=1)
"""What every row starts from: the objective fields' values when the ablation ran (the paper's objective,
``mog2d-small``'s beta 0.99), so each row's command rebuilds exactly the configuration it trained."""


def config_for(name: str, iterations: int, seed: int = 0):
    """The :class:`~gfncp_pyro.config.TrainConfig` of one ablation row."""
    from gfncp_pyro.config import preset

    if name not in CONFIGS:
        raise SystemExit(f"unknown configuration {name!r}; choose one of {sorted(CONFIGS)}")
    base = preset("mog2d-small", **BASE, iterations=iterations, seed=seed, panel_sets=20, select_by="panel_tv")
    return base.replace(**CONFIGS[name])  # objective="ncp" there replaces the GFNCP objective as a whole


def command(name: str, iterations: int, out: str) -> str:
    return f"python -m validation.ablation train {name} --iterations {iterations} --out {out}"


def _train(args) -> int:
    from gfncp_pyro.outputs import write_atomic
    from gfncp_pyro.train import Trainer

    torch.set_num_threads(1)
    config = config_for(args.name, args.iterations, args.seed)
    out = Path(args.out) / args.name
    resume = (out / "last.pt").exists()
    trainer = Trainer(config, out, resume=resume, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.json", json.dumps(config.to_dict(), indent=2))
    print(json.dumps(trainer.fit()))
    return 0


def _panel(run: Path) -> tuple[dict, dict]:
    """The last and the best (lowest TV) fidelity-panel records of a run."""
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    panel = [r for r in log if "panel_tv" in r]
    return panel[-1], min(panel, key=lambda r: r["panel_tv"])


def _report(args) -> int:
    from validation.exact import main as exact_main

    rows = []
    for name in CONFIGS:
        run = Path(args.out) / name
        checkpoint = run / f"{args.checkpoint}.pt"
        if not checkpoint.exists() or not (run / "metrics.jsonl").exists():
            continue
        report_path = run / f"exact_N{args.N}_{args.checkpoint}.json"
        if not report_path.exists() or args.rerun:
            gfncp = CONFIGS[name]["objective"] == "gfncp"
            spec = ["--gfncp", str(checkpoint), "--ncp", "none"] if gfncp else ["--ncp", str(checkpoint), "--gfncp", "none"]
            code = exact_main(["--N", str(args.N), "--datasets", str(args.datasets), *spec, "--json",
                               str(report_path), "--out", str(run / "figures"), "--no-progress"])
            if code:
                return code
        report = json.loads(report_path.read_text())
        model = "GFNCP" if CONFIGS[name]["objective"] == "gfncp" else "NCP"
        if not any("panel_tv" in line for line in (run / "metrics.jsonl").read_text().splitlines()):
            continue  # stopped before its first panel evaluation
        last, best = _panel(run)
        rows.append((name, last, best, report["models"][model], report["exact"]))
    print(f"Evaluated: each run's {args.checkpoint}.pt, `python -m validation.exact --N {args.N} --datasets "
          f"{args.datasets}` (seed 0). Panel: the trainer's 20-set fidelity panel (N = 8, its own seed).\n")
    print("| run | steps | panel TV at the end (best, step) | TV | TV over orders | reward TV | KL(q‖p) | "
          "top-10 mass | entropy of q (exact) | SDPP of exact MAP |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, last, best, m, exact in rows:
        print(f"| {name} | {last['step']} | {last['panel_tv']:.3f} ({best['panel_tv']:.3f}, {best['step']}) | "
              f"{m['tv']['mean']:.3f} | {m['tv_orders']['mean']:.3f} | {m['reward_tv']['mean']:.3f} | "
              f"{m['kl_qp']['mean']:.2f} | {m['q_mass_on_top10']['mean']:.2f} | {m['entropy_q']['mean']:.2f} "
              f"({exact['entropy']['mean']:.2f}) | {m['sdpp_map']['mean']:.3f} |")
    return 0


def _curves(args) -> int:
    from validation.plots import plot_learning_curves

    labels = args.labels or [Path(run).name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("give one --labels entry per run")
    plot_learning_curves({label: Path(run) / "metrics.jsonl" for label, run in zip(labels, args.runs)}, args.png)
    print(f"wrote {args.png}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.ablation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list").set_defaults(func=lambda args: print("\n".join(
        f"{name}: {CONFIGS[name]}" for name in CONFIGS)) or 0)
    train = sub.add_parser("train")
    train.add_argument("name")
    train.add_argument("--iterations", type=int, default=1500)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/ablation")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=_train)
    report = sub.add_parser("report")
    report.add_argument("--out", default="runs/ablation")
    report.add_argument("--N", type=int, default=8)
    report.add_argument("--datasets", type=int, default=50)
    report.add_argument("--rerun", action="store_true")
    report.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="which checkpoint of each run to evaluate (default: the state after the budget)")
    report.set_defaults(func=_report)
    curves = sub.add_parser("curves", help="PNG of the fidelity panel's TV and entropy against the step")
    curves.add_argument("runs", nargs="+", help="run directories trained with a fidelity panel")
    curves.add_argument("--labels", nargs="+", default=None)
    curves.add_argument("--png", type=Path, default=Path("validation/results/learning_curves.png"))
    curves.set_defaults(func=_curves)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
