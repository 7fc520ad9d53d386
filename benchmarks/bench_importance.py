"""Importance sampling with the GFNCP guide: speed at N = 300 and quality against the exact
posterior at N = 8 (issue: GFNCP as a Pyro guide).

Speed: :func:`gfncp_pyro.infer.importance` with 1,000 samples of one set of N = 300 drawn from
the network's training model (target: under 10 s on 2 CPU cores), split into decoding (the
samples and their ``log q``, :func:`gfncp_pyro.decoding.sample`) and weighting (collapsed
``log p(c, x)`` of all samples). A decoding step costs ``O(S (K + 1))`` network rows, so the
number of clusters the network opens is reported with the time.

Quality (``--quality``): runs ``examples/pyro_importance.py`` (``pyro.infer.Importance`` with
1,000 samples, the vectorised estimator, independence MH and the guide alone against exact
enumeration on seeded N = 8 sets, one torch thread: its tensors are tiny) and records its
medians.

Run: ``python benchmarks/bench_importance.py [--checkpoint PATH] [--threads 2] [--quality]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro import GFNCPGuide, infer, load_pretrained  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speed(network, model, points: int, samples: int, repeats: int) -> list[str]:
    data = model.sample_batch(torch.tensor([points]), generator=torch.Generator().manual_seed(0))
    x = data.x[0]
    guide = GFNCPGuide(model, network)
    infer.importance(model, guide, x[:50], 10, generator=0, warn=False)  # warm-up
    best = None
    for r in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            q = guide.partition_distribution(x, generator=r)
            labels = q.sample((samples,))
            decoded = time.perf_counter()
            log_q = q.log_prob(labels)
            log_weights = infer.collapsed_log_joint(model, x, labels) - log_q
        total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, decoded - start, total - (decoded - start), labels, log_weights)
    total, decode, weigh, labels, log_weights = best
    clusters = (labels.max(-1).values + 1).double()
    ess = torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))
    return [
        f"importance sampling, 1 set of N = {points}, {samples} samples, {torch.get_num_threads()} threads "
        f"(best of {repeats}):",
        f"  total {total:.2f} s (target < 10 s) = decoding {decode:.2f} s + weighting {weigh:.3f} s",
        f"  clusters per sample: mean {clusters.mean():.1f}, max {clusters.max():.0f} "
        f"(true {int(data.labels.max()) + 1}); ESS {ess:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a training checkpoint (default: shipped mog2d-small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="also run examples/pyro_importance.py")
    parser.add_argument("--datasets", type=int, default=50, help="data sets for --quality")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    example = load_example("pyro_importance")
    network, model, config = load_pretrained(args.checkpoint or example.DEFAULT_MODEL)
    source = args.checkpoint or "pretrained mog2d-small-gfncp"
    lines = [f"network: {source} (trained {config.objective.name}, N in [{config.model.n_min}, {config.model.n_max}], "
             f"model {model})"]
    lines += speed(network, model, args.points, args.samples, args.repeats)
    if args.quality:
        argv = ["--datasets", str(args.datasets), "--threads", "1"]
        argv += ["--checkpoint", args.checkpoint] if args.checkpoint else []
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            example.main(argv)
        lines += printed.getvalue().rstrip().splitlines()
    record("importance", lines)


if __name__ == "__main__":
    main()
