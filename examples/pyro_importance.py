"""``pyro.infer.Importance`` with the GFNCP guide against the exact posterior at N = 8.

For seeded data sets of the model the network was trained for, compares with the exact
posterior over all Bell(8) = 4,140 partitions (enumeration):

* ``pyro.infer.Importance(model, guide, num_samples)``: error of its log-evidence estimate and
  total variation (TV) between its weighted posterior and the exact one;
* the same estimator vectorised (:func:`gfncp_pyro.infer.importance`);
* independence Metropolis-Hastings with the guide as proposal
  (:func:`gfncp_pyro.infer.independence_mh`): TV of its samples and acceptance rate;
* the guide alone: TV between ``q(c | x)`` (identity order) and the exact posterior.

::

    python examples/pyro_importance.py                      # shipped mog2d-small, 50 sets
    python examples/pyro_importance.py --checkpoint runs/small-gfncp/best.pt --datasets 10

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from gfncp_pyro import AmortizedPartition, GFNCPGuide, exact_posterior, infer
from gfncp_pyro.partitions import enumerate_partitions

DEFAULT_MODEL = "mog2d-small"  # a shipped model's name or a checkpoint path


def pyro_importance(model, guide, x, num_samples: int):
    """Run ``pyro.infer.Importance``; return its log-evidence, ESS and weighted posterior."""
    posterior = pyro.infer.Importance(model, guide, num_samples=num_samples).run(x)
    labels = torch.stack([trace.nodes["c"]["value"] for trace in posterior.exec_traces])
    log_weights = torch.stack(posterior.log_weights).to(torch.float64)
    table = infer.posterior_table(labels, log_weights)
    return float(posterior.get_log_normalizer()), float(posterior.get_ESS()), table


def evaluate_set(model, guide, x, args, seed: int) -> dict:
    exact = exact_posterior(x, model.alpha, model.sigma_mu, model.sigma_x)
    truth = infer.PartitionTable(exact.labels, exact.log_posterior)
    log_z = float(exact.log_evidence)
    row = {}
    with torch.no_grad():
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        log_z_pyro, ess, table = pyro_importance(model, guide, x, args.samples)
        row["seconds_pyro"] = time.perf_counter() - start
        row["err_pyro"] = abs(log_z_pyro - log_z)
        row["tv_pyro"] = infer.total_variation(table, truth)
        row["ess_pyro"] = ess
        result = infer.importance(model, guide, x, args.samples, generator=seed, warn=False)  # see main
        row["ess_vectorised"] = float(result.ess)
        row["err_vectorised"] = abs(float(result.log_evidence) - log_z)
        row["tv_vectorised"] = infer.total_variation(infer.posterior_table(result.labels, result.log_weights), truth)
        chain = infer.independence_mh(model, guide, x, args.mh_samples, generator=seed)
        row["tv_mh"] = infer.total_variation(infer.posterior_table(chain.labels), truth)
        row["acceptance_mh"] = chain.acceptance_rate
        q = AmortizedPartition(guide.network, x.to(next(guide.network.parameters())))
        support = enumerate_partitions(x.shape[0])
        row["tv_guide"] = infer.total_variation(infer.PartitionTable(support, q.log_prob(support)), truth)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a training checkpoint (default: shipped mog2d-small)")
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1000, help="importance samples per set")
    parser.add_argument("--mh-samples", type=int, default=10000, help="MH states kept per set")
    parser.add_argument("--variant", choices=["dynamic", "padded", "collapsed"], default="dynamic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default 1: tiny tensors, 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or 1)  # tiny tensors: one thread is fastest

    guide = GFNCPGuide.from_pretrained(args.checkpoint or DEFAULT_MODEL, variant=args.variant)
    model = guide.model  # the CRP mixture the network was trained for
    sets = model.sample_batch(
        torch.full((args.datasets,), args.points), generator=torch.Generator().manual_seed(args.seed),
        dtype=torch.float64,
    ).x
    rows = [evaluate_set(model, guide, x, args, args.seed + i) for i, x in enumerate(sets)]
    summary = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    print(f"{args.datasets} data sets of N={args.points} (alpha={model.alpha}, sigma_mu={model.sigma_mu}, "
          f"sigma_x={model.sigma_x}, D={model.dim}), {args.variant} model; medians over sets:")
    print(f"  pyro.infer.Importance ({args.samples} samples): |log p(x) error| {summary['err_pyro']:.4f} nats, "
          f"TV {summary['tv_pyro']:.4f}, ESS {summary['ess_pyro']:.0f}, {summary['seconds_pyro']:.2f} s per set")
    print(f"  vectorised importance ({args.samples} samples): |log p(x) error| "
          f"{summary['err_vectorised']:.4f} nats, TV {summary['tv_vectorised']:.4f}")
    print(f"  independence MH ({args.mh_samples} states): TV {summary['tv_mh']:.4f}, "
          f"acceptance {summary['acceptance_mh']:.3f}")
    print(f"  guide alone, q(c | x) along the identity: TV {summary['tv_guide']:.4f}")
    low = sum(min(row["ess_pyro"], row["ess_vectorised"]) < infer.LOW_ESS_FRACTION * args.samples for row in rows)
    if low:
        print(f"  warning: on {low} of {len(rows)} sets the ESS is under {infer.LOW_ESS_FRACTION:.0%} of the "
              f"{args.samples} samples; their estimates rest on a few samples. Use more samples, fine-tune "
              "the guide (gfncp_pyro.infer.fit) or a network trained for this model (--checkpoint)")
    return {"rows": rows, "median": summary}


if __name__ == "__main__":
    main()
