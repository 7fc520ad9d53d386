"""Speed and peak memory of sequential decoding (:mod:`gfncp_pyro.decoding`).

Cases (issue: decoding), default ``EnergyNetConfig()``, points from a 2-D Gaussian mixture
(6 components, means with standard deviation 10, unit noise):

- greedy decoding of one set of N = 1,000 (target <= 0.15 s, issue 14; it was 0.5 s) and
  N = 10,000 (target <= 10 s, with its peak memory);
- greedy decoding of one set of N = 1,000 by the shipped ``pretrained:mog2d-small:gfncp``
  (points from its own model: means with standard deviation 5, unit noise);
- sampling one clustering for each of 64 sets of N = 100 (the trainer's CD negative samples);
- 1,000 samples of one set of N = 300.

A step costs ``O(W d^2)`` for ``W = max K + 1`` candidates, so the time depends on how many
clusters the network opens. An untrained network opens anything from a handful to N clusters
depending on its initialisation; ``--net-seed`` (default 7) picks one whose greedy decodings
open a few tens of clusters, the regime of a trained model on this data. The clusters reached
are reported next to each figure.

Each case runs in a fresh subprocess so that its peak resident memory is its own; "peak extra"
is the peak minus the resident memory after imports, encoding and a warm-up decoding of 100
points.

``--plain`` runs the plain decoding path (``gfncp_pyro.decoding.FUSED = False``) instead of
the fused CPU path, for before/after figures; both give identical labels and log-probabilities.

Run: ``python benchmarks/bench_decoding.py [--threads 1] [--repeats 3] [--net-seed 7] [--plain]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

CHILD = r"""
import json, resource, sys, time, torch
from gfncp_pyro.decoding import greedy, sample
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig

from gfncp_pyro import decoding

case, n, sets, samples, repeats, threads, net_seed, plain = sys.argv[1], *map(int, sys.argv[2:9])
decoding.FUSED = not plain
torch.set_num_threads(threads)
gen = torch.Generator().manual_seed(0)

def mixture(batch, n, scale=10.0):
    means = scale * torch.randn(batch, 6, 2, generator=gen)
    component = torch.randint(0, 6, (batch, n), generator=gen)
    centres = means.gather(1, component.unsqueeze(-1).expand(-1, -1, 2))
    return centres + torch.randn(batch, n, 2, generator=gen)

if case == "pretrained":
    from gfncp_pyro.loading import load_pretrained
    net = load_pretrained("pretrained:mog2d-small:gfncp")[0]
    x = mixture(sets, n, scale=5.0)
    case = "greedy"
else:
    torch.manual_seed(net_seed)
    net = EnergyNet(EnergyNetConfig())
    x = mixture(sets, n)
greedy(net, x[:1, :100])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for r in range(repeats):
    start = time.perf_counter()
    if case == "greedy":
        labels, log_prob = greedy(net, x)
    else:
        labels, log_prob = sample(net, x, num_samples=samples, generator=r)
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
clusters = (labels.max(-1).values + 1).double()
print(json.dumps({"best_s": min(times), "k_mean": clusters.mean().item(), "k_max": clusters.max().item(),
                  "finite": bool(torch.isfinite(log_prob).all()), "peak_extra_mib": (peak - base) / 1024}))
"""

# (label, case, N, sets, samples per set, target seconds or None, repeats capped at)
CASES = [
    ("greedy, 1 set of N = 1,000", "greedy", 1000, 1, 1, 0.15, None),
    ("greedy, pretrained gfncp, 1 set of N = 1,000", "pretrained", 1000, 1, 1, 0.15, None),
    ("greedy, 1 set of N = 10,000", "greedy", 10_000, 1, 1, 10.0, 1),
    ("sample, 64 sets of N = 100, 1 each", "sample", 100, 64, 1, None, None),
    ("sample, 1 set of N = 300, 1,000 samples", "sample", 300, 1, 1000, None, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per case")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the short cases")
    parser.add_argument("--net-seed", type=int, default=7, help="seed of the untrained network")
    parser.add_argument("--plain", action="store_true", help="the plain path (decoding.FUSED = False)")
    args = parser.parse_args()
    header = f"{'case':<46} {'best (s)':>9} {'target':>7} {'K mean':>7} {'K max':>6} {'peak extra MiB':>15}"
    path = "plain path (FUSED = False)" if args.plain else "fused CPU path (default)"
    lines = [f"threads {args.threads}, network seed {args.net_seed}, {path}", header]
    for label, case, n, sets, samples, target, cap in CASES:
        repeats = min(args.repeats, cap or args.repeats)
        command = [sys.executable, "-c", CHILD, case, str(n), str(sets), str(samples), str(repeats),
                   str(args.threads), str(args.net_seed), str(int(args.plain))]
        r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())
        if not r["finite"]:
            raise RuntimeError(f"{label}: non-finite log-probabilities")
        goal = f"{target:.2f}" if target else "-"
        lines.append(
            f"{label:<46} {r['best_s']:>9.3f} {goal:>7} {r['k_mean']:>7.1f} {r['k_max']:>6.0f} "
            f"{r['peak_extra_mib']:>15.1f}"
        )
    record("decoding", lines)


if __name__ == "__main__":
    main()
