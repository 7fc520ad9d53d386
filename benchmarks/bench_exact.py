"""Speed and peak memory of the exact posterior by enumeration (N = 8, 10, 12).

Targets (issue: foundation): N = 10 (115,975 partitions) under 0.5 s and N = 12 (4,213,597)
under 3 s on 2 CPU cores, peak memory under 2 GiB. Each N runs in a fresh subprocess so the
peak resident memory is its own; the figure reported is the peak minus the resident memory
after imports and a warm-up at N = 6.

Run: ``python benchmarks/bench_exact.py [--repeats 3]``
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
from gfncp_pyro.exact import exact_posterior
n, repeats = int(sys.argv[1]), int(sys.argv[2])
gen = torch.Generator().manual_seed(0)
x = 3 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
exact_posterior(x[:6], alpha=1.0, sigma_mu=5.0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeats):
    start = time.perf_counter()
    post = exact_posterior(x, alpha=1.0, sigma_mu=5.0)
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "rows": post.labels.shape[0], "best_s": min(times),
                  "peak_extra_mib": (peak - base) / 1024, "peak_total_mib": peak / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 12])
    args = parser.parse_args()
    lines = [f"{'N':>3} {'partitions':>11} {'best of ' + str(args.repeats) + ' (s)':>16} {'peak extra MiB':>15} {'peak total MiB':>15}"]
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(args.repeats)], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        lines.append(f"{r['n']:>3} {r['rows']:>11,} {r['best_s']:>16.3f} {r['peak_extra_mib']:>15.0f} {r['peak_total_mib']:>15.0f}")
    record("exact", lines)


if __name__ == "__main__":
    main()
