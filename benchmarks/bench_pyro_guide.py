"""GFNCPGuide inside pyro.infer (issue 11): Importance against the vectorised estimator, the cost
of one guide call, and vectorised against single-particle SVI steps.

On one seeded N = 8 set drawn from the shipped ``mog2d-small`` model's own CRP mixture, one torch
thread, in one process:

* ``pyro.infer.Importance(model, guide, num_samples=S).run(x)`` with autograd on (what a new
  user writes) and under ``torch.no_grad()``, against ``gfncp_pyro.infer.importance`` (all ``S``
  partitions in one decoding pass); log Z of each against the exact value
  (:func:`gfncp_pyro.exact_posterior`); and Pyro's own floor: ``Importance`` with a trivial model
  and guide that have the same three sites (``c``, ``mu`` in a plate, ``x`` observed in a plate)
  and plain ``Categorical``/``Normal`` distributions, so that the time Pyro's machinery costs
  per trace is visible; a profile splits ``Importance``'s time between gfncp_pyro, Pyro, torch
  and the rest;
* one guide call inside a Pyro trace (``poutine.trace(guide).get_trace(x)``), ``no_grad`` and
  with autograd;
* one SVI step (padded model) with ``Trace_ELBO(vectorize_particles=True, num_particles=64)``,
  with one particle, and with 64 sequential particles.

Run: ``python benchmarks/bench_pyro_guide.py`` (``--smoke``: tiny sizes, nothing recorded).
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Importance, Trace_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro import GFNCPGuide, exact_posterior, importance  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def floor_pair(n: int, dim: int):
    """A model and guide with the sites of the CRP mixture and trivial distributions."""
    def model(x):
        c = pyro.sample("c", dist.Categorical(torch.ones(n)).expand([n]).to_event(1))
        with pyro.plate("clusters", n):
            mu = pyro.sample("mu", dist.Normal(torch.zeros(dim), 5.0).to_event(1))
        with pyro.plate("points", n):
            pyro.sample("x", dist.Normal(mu[c], 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("c", dist.Categorical(torch.ones(n)).expand([n]).to_event(1))
        with pyro.plate("clusters", n):
            pyro.sample("mu", dist.Normal(torch.zeros(n, dim), 5.0).to_event(1))

    return model, guide


def profile_split(fn) -> str:
    """Share of ``fn``'s profile (each function's own time) in gfncp_pyro's Python code, Pyro's,
    torch's (Python and C) and the rest (Python's builtins, the standard library)."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    groups = {"gfncp_pyro": 0.0, "pyro": 0.0, "torch": 0.0, "other": 0.0}
    for (filename, _, function), (_, _, tottime, _, _) in pstats.Stats(profiler).stats.items():
        path = filename.replace(os.sep, "/")
        if filename == "~":  # a C function: torch's kernels and methods, or Python's builtins
            key = "torch" if "torch" in function else "other"
        else:
            key = "gfncp_pyro" if "/gfncp_pyro/" in path else "pyro" if "/pyro/" in path else \
                "torch" if "/torch/" in path else "other"
        groups[key] += tottime
    total = sum(groups.values())
    registering = sum(entry[3] for (filename, _, function), entry in pstats.Stats(profiler).stats.items()
                      if function == "module" and filename.replace(os.sep, "/").endswith("pyro/primitives.py"))
    return (", ".join(f"{k} {100 * v / total:.0f}%" for k, v in groups.items())
            + f"; registering the network's parameters with Pyro (pyro.module, cumulative) "
              f"{100 * registering / total:.0f}%")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mog2d-small", help="shipped model or checkpoint")
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500, help="guide calls timed per setting")
    parser.add_argument("--svi-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; nothing recorded")
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples, args.repeats, args.calls, args.svi_steps = 20, 1, 5, 1
    torch.set_num_threads(1)

    guide = GFNCPGuide.from_pretrained(args.model, generator=args.seed)
    model = guide.model
    x = model.sample_batch(torch.tensor([args.points]), generator=torch.Generator().manual_seed(args.seed)).x[0]
    exact = float(exact_posterior(x.double(), alpha=model.alpha, likelihood=model.likelihood).log_evidence)
    s = args.samples
    lines = [f"model {args.model}: {model}; one set of N = {args.points} (seed {args.seed}), exact log Z "
             f"{exact:.4f}; {torch.get_num_threads()} torch thread; OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.2f}"]

    # ---------------------------------------------------------------- importance sampling
    importance(model, guide, x, 10, generator=0, warn=False)  # warm-up
    with torch.no_grad():
        Importance(model, guide, num_samples=10).run(x)
    vec_time, vec = timed(lambda: importance(model, guide, x, s, generator=args.seed, warn=False), args.repeats)

    def pyro_run():
        return Importance(model, guide, num_samples=s).run(x)

    def pyro_run_no_grad():
        with torch.no_grad():
            return pyro_run()

    pyro_grad_time, post_grad = timed(pyro_run, args.repeats)
    pyro_time, post = timed(pyro_run_no_grad, args.repeats)
    floor_model, floor_guide = floor_pair(args.points, model.dim)
    Importance(floor_model, floor_guide, num_samples=10).run(x)
    floor_time, _ = timed(lambda: Importance(floor_model, floor_guide, num_samples=s).run(x), args.repeats)

    def z_line(name, seconds, log_z, ess):
        return (f"  {name}: {seconds:.3f} s = {seconds / vec_time:.1f}x infer.importance; log Z {log_z:.4f} "
                f"(error {log_z - exact:+.4f} nats), ESS {ess:.0f}")

    lines += [f"importance sampling, {s} samples (median of {args.repeats} runs):",
              z_line("gfncp_pyro.infer.importance", vec_time, float(vec.log_evidence), float(vec.ess)),
              z_line("pyro.infer.Importance, autograd on", pyro_grad_time,
                     float(post_grad.get_log_normalizer()), float(post_grad.get_ESS())),
              z_line("pyro.infer.Importance, torch.no_grad()", pyro_time,
                     float(post.get_log_normalizer()), float(post.get_ESS())),
              f"  Pyro's floor, Importance with a trivial model and guide of the same sites: {floor_time:.3f} s "
              f"= {floor_time / vec_time:.1f}x infer.importance ({1e3 * floor_time / s:.2f} ms per sample)",
              f"  profile of Importance (own time), autograd on: {profile_split(pyro_run)}",
              f"  profile of Importance (own time), no_grad: {profile_split(pyro_run_no_grad)}"]

    # ---------------------------------------------------------------------- guide calls
    def per_call(grad: bool) -> float:
        with torch.set_grad_enabled(grad):
            poutine.trace(guide).get_trace(x)
            start = time.perf_counter()
            for _ in range(args.calls):
                poutine.trace(guide).get_trace(x)
            return 1e3 * (time.perf_counter() - start) / args.calls

    lines.append(f"one guide call inside a Pyro trace (N = {args.points}, mean of {args.calls}): "
                 f"{per_call(False):.2f} ms under no_grad, {per_call(True):.2f} ms with autograd")
    pyro.clear_param_store()

    # ----------------------------------------------------------------------------- SVI
    padded = model.with_variant("padded")

    def svi_step_time(elbo) -> float:
        pyro.clear_param_store()
        svi_guide = GFNCPGuide(padded, guide.network, generator=args.seed)
        svi = SVI(padded, svi_guide, pyro.optim.Adam({"lr": 1e-5}), elbo)
        svi.step(x)  # warm-up
        seconds, loss = timed(lambda: svi.step(x), args.svi_steps)
        assert math.isfinite(loss)
        return seconds

    one = svi_step_time(Trace_ELBO())
    vectorised = svi_step_time(Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=1))
    sequential = svi_step_time(Trace_ELBO(num_particles=64))
    pyro.clear_param_store()
    lines.append(f"one SVI step, padded model, Trace_ELBO (median of {args.svi_steps}): 1 particle "
                 f"{1e3 * one:.1f} ms; 64 vectorised particles {1e3 * vectorised:.1f} ms "
                 f"({vectorised / one:.1f}x one particle); 64 sequential particles {1e3 * sequential:.1f} ms")

    if args.smoke:
        print("SMOKE RUN (tiny sizes), nothing recorded")
        for line in lines:
            print(line)
        return
    record("pyro_guide", lines)


if __name__ == "__main__":
    main()
