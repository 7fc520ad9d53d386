"""Exact maths against plain numpy: enumeration and the subset DP, time and peak memory.

Two implementations of the same algorithms on the same points (2-D, ``3 * randn``, seed 0;
``alpha = 1``, ``sigma_mu = 5``, ``sigma_x = 1``):

- ``ours``: :func:`gfncp_pyro.exact.exact_posterior` (enumeration of all Bell(N) partitions)
  and :func:`gfncp_pyro.subset_dp.subset_posterior` followed by ``log_evidence`` and
  ``coclustering()`` (the DP; ours also fills the MAP tables, which numpy's does not);
- ``numpy``: ``benchmarks/numpy_exact.py`` (``enumerate_posterior``, ``dp_posterior``: evidence
  plus co-clustering).

Cases: enumeration at N = 8 and 12, the DP at N = 8 and 16 (issue 14: "in a fresh process,
enumeration at N = 12 and the DP at N = 16 should be no slower than plain numpy, with peak
memory no higher, and small N should carry no big fixed overhead").

Every run is a fresh Python process with one thread (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``). It imports its implementation, records its resident memory,
times the **first** call (the fresh-process figure: page faults of new allocations, lazy
initialisation and all), then ``--warm`` more calls (best of them: the steady state), and
reports the peak resident memory over the run (``VmHWM`` of ``/proc/self/status``, the peak of
this process image; ``ru_maxrss`` would carry the parent's peak across ``exec``) minus the peak
after the imports.
Each case runs ``--runs`` fresh processes, alternating the two implementations; the table
gives the best and the median first-call time over them, the best warm call, and the median
peak. The outputs of the two implementations are compared (max absolute difference of the
log-posteriors / co-clustering and of the log evidence) as a check that they did the same job.

Run: ``python benchmarks/bench_exact.py [--runs 3] [--warm 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
impl, task, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
import torch
torch.set_num_threads(1)
x = 3 * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
if impl == "ours":
    from gfncp_pyro.exact import exact_posterior
    from gfncp_pyro.subset_dp import subset_posterior
    def run():
        if task == "enum":
            post = exact_posterior(x, alpha=1.0, sigma_mu=5.0, sigma_x=1.0)
            return post.log_posterior, post.log_evidence
        post = subset_posterior(x, alpha=1.0, sigma_mu=5.0, sigma_x=1.0)
        return post.coclustering(), post.log_evidence
else:
    import numpy_exact
    xn = x.numpy()
    def run():
        if task == "enum":
            _, log_post, log_ev = numpy_exact.enumerate_posterior(xn, 1.0, 5.0, 1.0)
            return torch.from_numpy(log_post), torch.tensor(log_ev)
        log_ev, cocluster = numpy_exact.dp_posterior(xn, 1.0, 5.0, 1.0)
        return torch.from_numpy(cocluster), torch.tensor(log_ev)
def peak_mib():
    # VmHWM: the peak resident set of this process image. (ru_maxrss is not reset by exec, so a
    # child of a larger parent would report the parent's size.)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak_mib()
start = time.perf_counter()
out = run()
first = time.perf_counter() - start
times = []
for _ in range(warm):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
peak = peak_mib()
summary = out[0].double()
print(json.dumps({"first_s": first, "warm_s": min(times) if times else None,
                  "peak_extra_mib": peak - base, "peak_total_mib": peak,
                  "log_evidence": float(out[1]),
                  "checksum": [float(summary.sum()), float(summary.abs().max()), float(summary.min())]}))
"""

CASES = [("enum", 8), ("enum", 12), ("dp", 8), ("dp", 16)]
NAMES = {"enum": "enumeration", "dp": "subset DP + co-clustering"}


def _child(impl: str, task: str, n: int, warm: int, output: Path | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = CHILD
    if output is not None:  # also save the full output for the cross-check
        code = CHILD + f"\ntorch.save(out[0], {str(output)!r})\n"
    done = subprocess.run([sys.executable, "-c", code, impl, task, str(n), str(warm), str(ROOT / "benchmarks")],
                          check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per implementation and case")
    parser.add_argument("--warm", type=int, default=2, help="timed calls after the first, in each process")
    parser.add_argument("--cases", nargs="+", default=[f"{t}:{n}" for t, n in CASES],
                        help="task:N pairs, task enum or dp")
    args = parser.parse_args()
    import tempfile

    import torch

    lines = [f"fresh process per run, 1 thread; {args.runs} runs per implementation, {args.warm} warm calls each",
             f"{'case':<30} {'impl':<6} {'first call s (best / median)':>29} {'warm s':>8} {'peak extra MiB':>15} "
             f"{'peak total MiB':>15}"]
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            task, n = case.split(":")
            n = int(n)
            results = {"ours": [], "numpy": []}
            for run in range(args.runs):
                for impl in (("ours", "numpy") if run % 2 == 0 else ("numpy", "ours")):
                    path = Path(tmp) / f"{impl}.pt" if run == 0 else None
                    results[impl].append(_child(impl, task, n, args.warm, path))
            ours, theirs = torch.load(Path(tmp) / "ours.pt"), torch.load(Path(tmp) / "numpy.pt")
            diff = float((ours.double() - theirs.double()).abs().max())
            ev = abs(results["ours"][0]["log_evidence"] - results["numpy"][0]["log_evidence"])
            checks.append(f"{NAMES[task]} N = {n}: max |difference| {diff:.1e} "
                          f"({'log-posteriors' if task == 'enum' else 'co-clustering'}), log evidence {ev:.1e}")
            for impl, rs in results.items():
                first = [r["first_s"] for r in rs]
                warm = [r["warm_s"] for r in rs if r["warm_s"] is not None]
                lines.append(
                    f"{NAMES[task] + f' N = {n}':<30} {impl:<6} {min(first):>14.4f} / {statistics.median(first):<12.4f}"
                    f" {min(warm) if warm else float('nan'):>8.4f} "
                    f"{statistics.median(r['peak_extra_mib'] for r in rs):>15.0f} "
                    f"{statistics.median(r['peak_total_mib'] for r in rs):>15.0f}")
    lines += ["same outputs:"] + [f"  {c}" for c in checks]
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
        lines.append(f"load average at the end: {' '.join(load)}")
    except OSError:
        pass
    record("exact", lines)


if __name__ == "__main__":
    main()
