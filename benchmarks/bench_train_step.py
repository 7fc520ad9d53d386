"""Wall time of one full training iteration of GFNCP and of NCP (batch 64, N = 100).

One GFNCP iteration (Alg. 1 in [1], data branch): draw ``(c, x)`` from
``gfncp_pyro.models.mog2d(alpha=6).sample_batch`` (64 sets of N = 100), random orders;
``teacher_force`` + MC (Eq. 24, ``flow="consistent"``) + reg (Eq. 28) on ``partition_energy``;
the CD negative sample (Eq. 27) drawn by ``decoding.sample`` (no grad) and re-scored by
``partition_energy``; backward; one Adam step. The MC sum runs over all steps or is estimated
on a random subset of steps (``random_step_subset``). The NCP iteration replaces all losses by
``ncp_nll`` (Eq. 11). Default ``EnergyNetConfig()`` (the paper's MoG sizes), float32, a fresh
network (so the policy samples open about sqrt(2N) clusters).

Each configuration reports the median wall time of ``--repeats`` iterations (after one warm-up
iteration) with its minimum, maximum and process CPU time, the time spent in
``decoding.sample`` alone, the FLOPs of one iteration and the achieved GFLOP/s, next to a plain
``(80000 x 128) @ (128 x 128)`` float32 matmul (the shape of the network's layers).

FLOPs count the linear layers only (2 per multiply-add) as the code evaluates them: encoders
per point (the sampler reuses the training pass's encodings), ``g``'s first layer and ``f``'s
``U`` columns per point, the rest of ``g`` (its last layer fused with ``f``'s first) per row
``H + h``, the rest of ``f`` per returned energy, ``partition_energy`` per cluster, and the
sampler's rows ``K_t + 1`` per set and step; backward counts twice the forward. The machine may
be shared: the process CPU time is reported next to the wall time. With 2 threads on a machine
whose cores are busy with other processes, OpenMP's default spin-waiting at the barriers of the
sampler's many small per-step operations can make one ``decoding.sample`` call take tens of
seconds instead of a fraction of one; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts)
avoids that, and its value is recorded.

Run: ``python benchmarks/bench_train_step.py [--repeats 5] [--threads 2 1]``

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro import decoding, losses, policy  # noqa: E402
from gfncp_pyro.models import mog2d  # noqa: E402
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig  # noqa: E402
from gfncp_pyro.partitions import canonicalize  # noqa: E402

BATCH, N = 64, 100
DELTA, LAMBDA = 0.6, 0.4  # weights of reg and CD (reference code)


def linear_macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


class Iteration:
    """One training iteration of ``objective`` with an optional step subset of ``steps``."""

    def __init__(self, net: EnergyNet, objective: str, steps: int | None, seed: int):
        self.net, self.objective, self.steps = net, objective, steps
        self.optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = mog2d(alpha=6.0)
        self.sample_seconds = 0.0
        self.flops = 0

    def __call__(self) -> None:
        net, gen = self.net, self.generator
        data = self.model.sample_batch(torch.full((BATCH,), N), gen)
        orders = torch.rand(BATCH, N, generator=gen).argsort(1)
        lengths = data.mask.sum(1)
        subset = None if self.steps is None else policy.random_step_subset(lengths, self.steps, gen)
        self.optimizer.zero_grad(set_to_none=True)
        enc = policy.encode_points(net, data.x)
        steps = policy.teacher_force(net, None, data.labels, data.mask, orders, encodings=enc,
                                     step_subset=subset)
        self.flops = self.encoder_flops() + self.teacher_flops(steps)
        if self.objective == "ncp":
            loss = losses.ncp_nll(steps).mean()
        else:
            energy = policy.partition_energy(net, None, data.labels, data.mask, encodings=enc)
            start = time.perf_counter()
            sample, _ = decoding.sample(net, data.x, 1, mask=data.mask, orders=orders,
                                        generator=gen, encodings=enc)
            self.sample_seconds = time.perf_counter() - start
            sample = sample[:, 0]
            energy_sample = policy.partition_energy(net, None, sample, data.mask, encodings=enc)
            loss = (losses.marginal_consistency(steps, "consistent")
                    + DELTA * losses.energy_regularizer(energy)
                    + LAMBDA * losses.contrastive_divergence(energy, energy_sample)).mean()
            self.flops += self.partition_flops(data.labels) + self.partition_flops(sample)
            self.flops += self.decoding_flops(sample, orders)
        loss.backward()
        self.optimizer.step()

    # FLOP counts (see the module docstring) ---------------------------------------------
    def per_point_macs(self) -> int:
        """``g``'s first layer on ``h`` and ``f``'s ``U`` columns on ``U``, per point and step."""
        cfg = self.net.config
        return cfg.h_dim * cfg.hidden + cfg.h_dim * cfg.hidden

    def row_macs(self) -> tuple[int, int]:
        """Multiply-adds of one row through ``g`` after its first layer (fused head included)
        and through ``f`` after its first layer."""
        cfg = self.net.config
        g_macs = linear_macs(self.net.g[1:-1]) + cfg.hidden * cfg.hidden
        return g_macs, linear_macs(self.net.f_net[1:])

    def encoder_flops(self) -> int:
        return 3 * 2 * BATCH * N * (linear_macs(self.net.h) + linear_macs(self.net.u))

    def teacher_flops(self, steps) -> int:
        g_macs, f_macs = self.row_macs()
        taken = nn.functional.one_hot(steps.actions.clamp(min=0), steps.energies.shape[-1]).bool()
        g_rows = int((steps.candidate_mask | taken).sum())
        f_rows = int(steps.candidate_mask.sum())
        return 3 * 2 * (BATCH * N * self.per_point_macs() + g_rows * g_macs + f_rows * f_macs)

    def partition_flops(self, labels: torch.Tensor) -> int:
        clusters = int((labels.max(1).values + 1).sum())
        return 3 * 2 * (clusters * linear_macs(self.net.g) + BATCH * linear_macs(self.net.f_net))

    def decoding_flops(self, labels: torch.Tensor, orders: torch.Tensor) -> int:
        """Forward only, on the CPU's rows: ``K_t + 1`` candidates per set and step ``t >= 1``."""
        g_macs, f_macs = self.row_macs()
        along = canonicalize(labels.gather(1, orders))  # K_t = max of along[:t] + 1
        rows = int((along.cummax(1).values[:, :-1] + 2).sum())
        return 2 * (BATCH * N * self.per_point_macs() + rows * (g_macs + f_macs))


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process CPU times of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    torch.manual_seed(0)  # the default initialisation of the fresh network
    net = EnergyNet(EnergyNetConfig())
    default_threads = torch.get_num_threads()
    cases = [("gfncp", None), ("gfncp", 32), ("gfncp", 16), ("ncp", None), ("ncp", 16)]
    lines = [f"B={BATCH}, N={N}, float32, CRP alpha=6, median of {args.repeats} iterations "
             "(after 1 warm-up); cpu = process CPU time (all threads); sample = the "
             "decoding.sample call inside the GFNCP iteration (wall); OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines.append(f"-- {threads} thread(s)")
        for objective, steps in cases:
            iteration = Iteration(net, objective, steps, seed=1)
            samples = []

            def run():
                iteration()
                samples.append(iteration.sample_seconds)

            wall, cpu = timed(run, args.repeats)
            seconds = statistics.median(wall)
            rate = iteration.flops / seconds / 1e9
            name = f"{objective}, {'all steps' if steps is None else f'{steps} steps'}"
            sample = ""
            if objective == "gfncp":
                sample = f"sample {statistics.median(samples[1:]):5.2f} s"
            lines.append(f"{name:<17} {seconds:5.2f} s (min {min(wall):5.2f}, max {max(wall):5.2f},"
                         f" cpu {statistics.median(cpu):5.2f})  {BATCH / seconds:6.1f} sets/s "
                         f"{BATCH * N / seconds:7.0f} points/s  {iteration.flops / 1e9:5.1f} GFLOP "
                         f"{rate:5.1f} GFLOP/s  {sample}")
        a, w = torch.randn(80_000, 128), torch.randn(128, 128)
        seconds = statistics.median(timed(lambda: a @ w, args.repeats)[0])
        lines.append(f"plain matmul (80000 x 128) @ (128 x 128): {seconds * 1e3:6.1f} ms, "
                     f"{2 * 80_000 * 128 * 128 / seconds / 1e9:6.1f} GFLOP/s")
    torch.set_num_threads(default_threads)  # the header's thread count: the default
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(f"target (issue): <= 0.8 s per iteration on 2 CPU cores; load average (1 min) "
                 f"at the end: {load:.1f} on {os.cpu_count()} cores")
    record("train_step", lines)


if __name__ == "__main__":
    main()
