"""Wall time of one full training iteration of the real objectives (batch 64, N = 100).

Each iteration is what :class:`gfncp_pyro.train.Trainer` does: draw a batch with
:func:`gfncp_pyro.train.draw_batch` from the ``mog2d`` preset's data model (alpha 6, sigma_mu
10, sigma_x 1) with every set of N = 100 points and random orders (exploration partitions on a
fraction 1 - beta of the sets), call the configuration's objective object
(``config.objective``: GFNCP or NCP, every term it has, e.g. the
contrastive-divergence policy sample of the paper's objective), backward, clip, one Adam step.
Default ``EnergyNetConfig()`` (the paper's MoG sizes, plus the flow head where the objective
needs it), float32, a fresh network.

Each configuration reports the median wall time of ``--repeats`` iterations after one warm-up
iteration, with its minimum, maximum and the process CPU time, sets/s, points/s and the
matrix-multiply GFLOP of an iteration (``FlopCounterMode``) with the GFLOP/s it reaches; a plain
``(80000 x 128) @ (128 x 128)`` float32 matmul is timed beside them. With 2 threads on a machine
whose cores are busy with other processes, OpenMP's spin-waiting can make the sampler's many
small operations very slow; ``OMP_WAIT_POLICY`` is recorded.

Run: ``python benchmarks/bench_train_step.py [--repeats 5] [--threads 1] [--bf16] [--background both]``
(``--bf16``: every case also with bf16 autocast of the network on the CPU; ``--background both``:
every GFNCP case with its policy samples drawn in line and in a second thread,
:mod:`gfncp_pyro.background`). Each case also prints its *floor*: its matrix-multiply GFLOP at
the plain matmul's rate, the time its matrix products alone would take.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro.config import PAPER_OBJECTIVE, TrainConfig, preset  # noqa: E402
from gfncp_pyro.nn import EnergyNet  # noqa: E402
from gfncp_pyro.objectives import GFNCPObjective  # noqa: E402
from gfncp_pyro.train import draw_batch, iteration_generator  # noqa: E402

BATCH, N = 64, 100

CASES: dict[str, dict] = {
    "gfncp default": {},
    "gfncp paper objective": dict(objective=PAPER_OBJECTIVE, beta=0.999),
    "gfncp paper objective, 32 MC steps": dict(objective=PAPER_OBJECTIVE, beta=0.999, mc_steps=32),
    "ncp": dict(objective="ncp"),
    "ncp, 16 steps": dict(objective="ncp", mc_steps=16),
    "ncp, 6 orders": dict(objective="ncp", num_orders=6),
}


def config_of(changes: dict) -> TrainConfig:
    """The ``mog2d`` preset with N = 100, batch 64, on the CPU, and ``changes``."""
    return preset("mog2d", n_min=N, n_max=N, batch_size=BATCH, device="cpu").replace(**changes)


class Iteration:
    """One training iteration of ``config``'s objective (the trainer's ``train_step``)."""

    def __init__(self, config: TrainConfig, seed: int, bf16: bool = False, background: bool | None = None):
        torch.manual_seed(seed)
        self.background = background  # policy samples in a second thread (None: the objective's rule)
        self.bf16 = bf16  # bf16 autocast of the network's layers (on the CPU here; the trainer uses it on CUDA)
        self.config = config
        self.net = EnergyNet(config.net)
        self.objective = config.objective
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-5)
        self.step = 10**6  # every scheduled term at full weight

    def __call__(self) -> None:
        generator = iteration_generator(self.config.seed, 0, self.step)
        batch = draw_batch(self.config, generator, torch.device("cpu"))
        kwargs = {"background": self.background} if isinstance(self.objective, GFNCPObjective) else {}
        loss, _ = self.objective.loss(self.net, batch, generator, step=self.step, bf16=self.bf16, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.step += 1


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


def counted_gflop(fn) -> float:
    """Matrix-multiply GFLOP of one more call of ``fn`` (forward and backward), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (elementwise operations are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def header(repeats: int) -> str:
    """The first line of the record: sizes, protocol and the default objective's choices."""
    default = config_of({}).objective
    return (f"B={BATCH}, N={N}, float32, mog2d data (alpha 6), median of {repeats} iterations (after 1 "
            f"warm-up); cpu = process CPU time (all threads). Default GFNCP objective: flow={default.flow}, "
            f"balance={default.balance}, reward={default.reward}, gauge={default.gauge}; OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--background", choices=["auto", "both"], default="auto",
                        help="GFNCP's policy samples: the objective's rule (a second thread when a core is spare), or "
                             "each GFNCP case timed with the samples in line and in the second thread")
    parser.add_argument("--bf16", action="store_true",
                        help="also time every case with bf16 autocast of the network on the CPU (avx512_bf16)")
    args = parser.parse_args()
    lines = [header(args.repeats)]
    default_threads = torch.get_num_threads()
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines.append(f"-- {threads} thread(s)")
        a, w = torch.randn(80_000, 128), torch.randn(128, 128)
        seconds = statistics.median(timed(lambda: a @ w, args.repeats)[0])
        plain = 2 * 80_000 * 128 * 128 / seconds / 1e9
        lines.append(f"plain matmul (80000 x 128) @ (128 x 128): {seconds * 1e3:6.1f} ms, {plain:6.1f} GFLOP/s")
        blocks = list(a.split(4096))  # the row blocks of the network's MLP chains
        seconds = statistics.median(timed(lambda: [block @ w for block in blocks], args.repeats)[0])
        blocked = 2 * 80_000 * 128 * 128 / seconds / 1e9
        plain = max(plain, blocked)
        lines.append(f"the same in 4096-row blocks: {seconds * 1e3:6.1f} ms, {blocked:6.1f} GFLOP/s (floor = a case's "
                     f"GFLOP at the faster of the two, {plain:.1f} GFLOP/s: its matrix products alone; with samples "
                     "beside, GFLOP and floor count the main thread only)")
        runs = [(name, bf16, None) for name in args.cases for bf16 in ((False, True) if args.bf16 else (False,))]
        if args.background == "both":
            runs = [(name, bf16, where) for name, bf16, _ in runs
                    for where in ((False, True) if name.startswith("gfncp") else (None,))]
        for name, bf16, where in runs:
            iteration = Iteration(config_of(CASES[name]), seed=1, bf16=bf16, background=where)
            wall, cpu = timed(iteration, args.repeats)
            seconds = statistics.median(wall)
            gflop = counted_gflop(iteration)
            label = name + (", bf16" if bf16 else "") + {None: "", False: ", samples in line",
                                                          True: ", samples beside"}[where]
            lines.append(f"{label:<42} {seconds:5.2f} s (min {min(wall):5.2f}, max {max(wall):5.2f}, cpu "
                         f"{statistics.median(cpu):5.2f})  {BATCH / seconds:6.1f} sets/s {BATCH * N / seconds:7.0f} "
                         f"points/s  {gflop:6.1f} GFLOP {gflop / seconds:6.1f} GFLOP/s  floor {gflop / plain:5.2f} s")
        if args.bf16:
            a, w = a.bfloat16(), w.bfloat16()
            seconds = statistics.median(timed(lambda: a @ w, args.repeats)[0])
            lines.append(f"plain bf16 matmul (80000 x 128) @ (128 x 128): {seconds * 1e3:6.1f} ms, "
                         f"{2 * 80_000 * 128 * 128 / seconds / 1e9:6.1f} GFLOP/s")
    torch.set_num_threads(default_threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
    record("train_step", lines)


if __name__ == "__main__":
    main()
