"""Training throughput on images at the paper's MNIST settings on a GPU (ready for one H200, < 10 minutes).

Cases (issue 7), on CUDA:

1. GFNCP and NCP iterations of the ``mnist`` preset (conv encoder of width 256, batch 64, N
   uniform in [100, 1000], alpha 1, beta 0.99; App. A.1-A.2 in [1]) in fp32 and bf16 autocast,
   and GFNCP with ``mc_steps = 64`` (the unbiased step-subset estimate): iterations/s, sets/s,
   images/s (expected from the mean set size) and peak GPU memory (reset after the warm-up);
2. :func:`~gfncp_pyro.data.augment.augment_images` on the GPU, M = 65,536 images: images/s;
3. GFNCP iterations of the ``embeddings`` preset (384-d points, MLP encoder) on a synthetic
   embeddings file written with :func:`~gfncp_pyro.data.save_embeddings`.

Images come from ``--data`` (an MNIST IDX directory; default ``../shared/data/mnist`` next to
the repository). If it does not exist, a synthetic random pool of 10,000 28x28 images with 10
classes (a temporary ``.npz``) is used instead, and the output says so. Each case runs
``--warmup`` iterations, then up to ``--iterations`` timed ones, stopping early at its share of
what is left of ``--budget-s`` (counted from the start of :func:`main`); cases after the budget
is spent are reported as skipped. On CUDA the lines are appended to
``results/gpu_train_images.md``.

Without CUDA (or with ``--cpu-smoke``) a tiny, clearly labelled CPU smoke run (fp32 only, one
thread, 2 iterations, batch 2, N in [4, 8], M = 256) checks that the script works; it prints its lines and
records nothing.

Run: ``python benchmarks/gpu_train_images.py [--data DIR] [--iterations 10] [--warmup 3] [--budget-s 480]``

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro.config import PAPER_OBJECTIVE, preset  # noqa: E402
from gfncp_pyro.data import ImageAugment, augment_images, load_images, save_embeddings  # noqa: E402
from gfncp_pyro.train import Trainer  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
POOL_SIZE, CLASSES = 10_000, 10


def synthetic_images(directory: Path) -> Path:
    """A ``.npz`` of ``POOL_SIZE`` random 28x28 uint8 images (mostly dark, like MNIST), labels
    ``i mod CLASSES``."""
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(POOL_SIZE, 28, 28, generator=generator) ** 4 * 255).to(torch.uint8)
    path = directory / "synthetic_images.npz"
    np.savez(path, images=images.numpy(), labels=np.arange(POOL_SIZE) % CLASSES)
    return path


def synthetic_embeddings(directory: Path) -> Path:
    """A ``.npz`` of ``POOL_SIZE`` standard normal 384-d features, labels ``i mod CLASSES``."""
    features = torch.randn(POOL_SIZE, 384, generator=torch.Generator().manual_seed(1))
    return save_embeddings(directory / "embeddings.npz", features, torch.arange(POOL_SIZE) % CLASSES)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_case(name: str, data_path: Path, out_dir: Path, iterations: int, warmup: int, deadline: float,
               **overrides) -> str:
    """Throughput of ``Trainer.train_step`` for preset ``name``; warm-up and timed loop both stop
    at ``deadline`` (``time.perf_counter()`` value) after at least one iteration each."""
    config = preset(name, data_path=str(data_path), iterations=warmup + iterations, val_sets=1, val_every=10**6,
                    **overrides)
    trainer = Trainer(config, out_dir, progress=False)
    device = trainer.device
    for _ in range(warmup):
        trainer.train_step()
        if time.perf_counter() > deadline:
            break
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    done, start = 0, time.perf_counter()
    while done < iterations and (done == 0 or time.perf_counter() < deadline):
        trainer.train_step()
        done += 1
    synchronize(device)
    elapsed = time.perf_counter() - start
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a"
    model, batch_size = config.model, config.optim.batch_size
    sets = done * batch_size
    points = sets * (model.n_min + model.n_max) / 2
    unit = "images" if config.data.encoder == "conv" else "vectors"
    stopped = "" if done == iterations else " (stopped at its time share)"
    return (f"{name:<10} {config.objective.name:<5} bf16={str(trainer.bf16):<5} "
            f"mc_steps={str(config.objective.mc_steps):<4} "
            f"B={batch_size} N=[{model.n_min},{model.n_max}]: {done} it in {elapsed:.2f} s, "
            f"{done / elapsed:7.3f} it/s {sets / elapsed:8.1f} sets/s {points / elapsed:10.0f} {unit}/s (expected) "
            f"peak GPU {peak}{stopped}")


def augment_case(data_path: Path, count: int, device: torch.device, repeats: int) -> str:
    """Best time of ``augment_images`` on ``count`` pool images (repeated cyclically) on ``device``."""
    pool = load_images(data_path).points
    images = pool[torch.arange(count) % pool.shape[0]].to(device)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats + 1):  # the first call is a warm-up
        synchronize(device)
        start = time.perf_counter()
        augment_images(images, ImageAugment(), generator)
        synchronize(device)
        times.append(time.perf_counter() - start)
    best = min(times[1:])
    return (f"augment_images on {device.type}, M = {count:,} 1x28x28, ImageAugment(): best of {repeats} "
            f"{best * 1e3:.1f} ms, {count / best:,.0f} images/s")


def main(argv: list[str] | None = None) -> list[str]:
    """Run the cases (see the module docstring) and return the printed lines."""
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX directory (or .npz)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per training case")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up iterations per training case")
    parser.add_argument("--budget-s", type=float, default=480.0, help="cases starting after this are skipped")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run (automatic without CUDA)")
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if smoke else "cuda")
    out = sys.stdout if smoke else sys.stderr  # on CUDA, record() prints the lines to stdout at the end
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data.exists():
            data, source = args.data, str(args.data)
        else:
            data = synthetic_images(tmp)
            source = f"SYNTHETIC random pool of {POOL_SIZE:,} 28x28 images, {CLASSES} classes ({args.data} is missing)"
        embeddings = synthetic_embeddings(tmp)
        if smoke:
            torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared machine
            lines = ["CPU SMOKE RUN (no CUDA or --cpu-smoke): tiny sets, fp32 only, one thread, not a benchmark, "
                     "nothing recorded"]
            iterations, warmup, count, mc_steps, precisions = 2, 1, 256, 4, (False,)
            sizes = {"batch_size": 2, "n_min": 4, "n_max": 8}
        else:
            lines = [f"CUDA, {args.iterations} timed iterations after {args.warmup} warm-up per training case, "
                     f"budget {args.budget_s:.0f} s"]
            iterations, warmup, count, mc_steps, precisions = args.iterations, args.warmup, 65_536, 64, (False, True)
            sizes = {}
        lines += [f"images: {source}, split index:0:5000",
                  f"embeddings: synthetic {POOL_SIZE:,} x 384 standard normal, {CLASSES} classes, split classes:half"]
        cases = []
        train = functools.partial(train_case, iterations=iterations, warmup=warmup, device=device.type, **sizes)
        variants = [(name, name, None, bf16) for name in ("gfncp", "ncp") for bf16 in precisions]
        variants += [("gfncp", PAPER_OBJECTIVE, mc_steps, bf16) for bf16 in precisions]  # sampled steps: the paper's MC loss
        for name, objective, mc, bf16 in variants:
            cases.append((f"mnist {name} bf16={bf16} mc_steps={mc}",
                          functools.partial(train, "mnist", data, tmp / f"run{len(cases)}", objective=objective,
                                            bf16=bf16, mc_steps=mc)))
        cases.append((f"augment_images M = {count:,}", lambda deadline: augment_case(data, count, device, repeats=5)))
        for bf16 in precisions:
            cases.append((f"embeddings gfncp bf16={bf16}",
                          functools.partial(train, "embeddings", embeddings, tmp / f"run{len(cases)}", bf16=bf16)))
        for line in lines:
            print(line, file=out, flush=True)
        for k, (label, run) in enumerate(cases):
            left = args.budget_s - (time.perf_counter() - start)
            gc.collect()
            if left <= 0:
                line = f"{label}: skipped (budget of {args.budget_s:.0f} s spent)"
            else:
                try:
                    line = run(deadline=time.perf_counter() + left / (len(cases) - k))
                except torch.OutOfMemoryError as err:
                    line = f"{label}: out of GPU memory ({str(err).splitlines()[0]})"
            lines.append(line)
            print(line, file=out, flush=True)
    if not smoke:
        record("gpu_train_images", lines)
    return lines


if __name__ == "__main__":
    main()
