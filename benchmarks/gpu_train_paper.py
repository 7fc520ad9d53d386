"""Training throughput at the paper's MoG settings on a GPU (ready for one H200, < 10 minutes).

Runs GFNCP and NCP iterations of the ``mog2d`` preset (batch 64, N uniform in [100, 1000],
alpha = 6, D = 2; App. A in [1]) on CUDA, fp32 and bf16 autocast, and records iterations/s,
sets/s, points/s and peak GPU memory. Falls back to a short CPU run (clearly labelled) when no
GPU is present, so the script itself is tested everywhere.

Run: ``python benchmarks/gpu_train_paper.py [--iterations 30] [--warmup 5]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro.config import PAPER_OBJECTIVE, preset  # noqa: E402
from gfncp_pyro.train import Trainer  # noqa: E402


def measure(objective, bf16: bool, iterations: int, warmup: int, device: str, **overrides) -> str:
    config = preset("mog2d", objective=objective, bf16=bf16, device=device, iterations=warmup + iterations,
                    val_every=10**6, **overrides)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, progress=False)
        for _ in range(warmup):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        points = 0
        start = time.perf_counter()
        for i in range(iterations):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        model, batch_size = config.model, config.optim.batch_size
        points = iterations * batch_size * (model.n_min + model.n_max) / 2
        peak = torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == "cuda" else float("nan")
    return (f"{config.objective.name:<6} bf16={str(bf16):<5} mc_steps={str(config.objective.mc_steps):<5} "
            f"N=[{model.n_min},{model.n_max}] "
            f"{iterations / elapsed:7.3f} it/s {iterations * batch_size / elapsed:8.1f} sets/s "
            f"{points / elapsed:10.0f} points/s (expected) peak GPU {peak:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if torch.cuda.is_available():
        lines = [measure(obj, bf16, args.iterations, args.warmup, "cuda")
                 for obj in ("gfncp", "ncp") for bf16 in (False, True)]
        lines.append(measure(PAPER_OBJECTIVE, True, args.iterations, args.warmup, "cuda", mc_steps=64))
    else:
        lines = ["no CUDA device: CPU fallback with reduced sets (N in [20, 60], 2 iterations), for testing only",
                 measure("gfncp", False, 2, 1, "cpu", n_min=20, n_max=60)]
    record("gpu_train_paper", lines)


if __name__ == "__main__":
    main()
