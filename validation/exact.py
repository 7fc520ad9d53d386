"""``python -m validation.exact --N 8``: the exact posterior over partitions of small data sets.

Draws seeded data sets from the Pyro model of Eq. (1) in [1] (the ``mog2d-small`` setting by
default: D = 2, alpha = 1, sigma_mu = 5, sigma_x = 1), enumerates all Bell(N) partitions and
prints the exact posterior's top partitions, its entropy and the log evidence.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gfncp_pyro.exact import ExactPosterior, exact_posterior
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.partitions import MAX_ENUMERATION_N, bell_number, labels_to_blocks

__all__ = ["exact_posterior", "draw_datasets", "main"]


def draw_datasets(mixture: CRPMixture, num_points: int, num_datasets: int, seed: int):
    """``num_datasets`` seeded data sets of ``num_points`` points from ``mixture``.

    :returns: a :class:`~gfncp_pyro.models.MixtureBatch` in float64.
    """
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.full((num_datasets,), num_points, dtype=torch.long)
    return mixture.sample_batch(lengths, generator=generator, dtype=torch.float64)


def _format_partition(labels: torch.Tensor) -> str:
    return " ".join("{" + ",".join(map(str, block)) + "}" for block in labels_to_blocks(labels))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m validation.exact",
        description="Exact posterior over all partitions of small data sets (Bell numbers).",
    )
    parser.add_argument("--N", type=int, default=8, help="points per data set (1..12)")
    parser.add_argument("--datasets", type=int, default=50, help="number of seeded data sets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data sets")
    parser.add_argument("--alpha", type=float, default=1.0, help="CRP concentration")
    parser.add_argument("--sigma-mu", type=float, default=5.0, help="prior std of cluster means")
    parser.add_argument("--sigma-x", type=float, default=1.0, help="std of points around means")
    parser.add_argument("--top", type=int, default=5, help="partitions shown for the first set")
    parser.add_argument("--json", type=Path, default=None, help="write a JSON report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 1 <= args.N <= MAX_ENUMERATION_N:
        print(
            f"error: --N must be between 1 and {MAX_ENUMERATION_N} for enumeration "
            f"(Bell({args.N}) partitions); got {args.N}",
            file=sys.stderr,
        )
        return 2
    if args.datasets < 1:
        print(f"error: --datasets must be >= 1, got {args.datasets}", file=sys.stderr)
        return 2
    try:
        mixture = CRPMixture(args.alpha, args.sigma_mu, args.sigma_x, dim=2)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    batch = draw_datasets(mixture, args.N, args.datasets, args.seed)
    start = time.perf_counter()
    results: list[ExactPosterior] = [
        exact_posterior(x, args.alpha, likelihood=mixture.likelihood) for x in batch.x
    ]
    elapsed = time.perf_counter() - start
    print(
        f"Exact posterior: {args.datasets} data sets of N={args.N} from {mixture!r}, "
        f"seed {args.seed}; Bell({args.N}) = {bell_number(args.N):,} partitions each "
        f"({elapsed:.2f} s)"
    )
    first = results[0]
    truth = batch.labels[0]
    print(f"\nData set 0: true partition {_format_partition(truth)}")
    labels, log_p = first.top(args.top)
    for rank, (lab, lp) in enumerate(zip(labels, log_p.tolist()), 1):
        print(f"  #{rank}  p = {torch.tensor(lp).exp().item():.4f}  {_format_partition(lab)}")
    entropies = [r.entropy for r in results]
    evidences = [float(r.log_evidence) for r in results]
    map_hits = [
        bool(torch.equal(r.labels[int(r.log_posterior.argmax())], t))
        for r, t in zip(results, batch.labels)
    ]
    print(f"\n{'metric':<28}{'mean':>10}{'std':>10}{'median':>10}")
    for name, values in (("posterior entropy (nats)", entropies), ("log evidence", evidences)):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<28}{statistics.mean(values):>10.3f}{std:>10.3f}{statistics.median(values):>10.3f}")
    print(f"{'MAP == true partition':<28}{sum(map_hits) / len(map_hits):>10.3f}")
    if args.json is not None:
        report = {
            "N": args.N,
            "datasets": args.datasets,
            "seed": args.seed,
            "model": {"alpha": args.alpha, "sigma_mu": args.sigma_mu, "sigma_x": args.sigma_x, "dim": 2},
            "exact": [
                {"entropy": e, "log_evidence": v, "map_is_true": h}
                for e, v, h in zip(entropies, evidences, map_hits)
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
