"""Throughput of the image augmentations and of the instance-discrimination set sampler.

Cases (issue 7), on random tensors of MNIST size (no data files needed):

- :func:`~gfncp_pyro.data.augment.augment_images` with the default ``ImageAugment()`` on batches
  of ``M`` 1x28x28 images (target >= 10,000 images/s on 2 CPU cores);
- :func:`~gfncp_pyro.data.image_sets.instance_sets` with ``ImageAugment()`` from a pool of 60,000
  random 1x28x28 images: ``B = 64`` sets, sizes uniform in ``[100, 1000]``, CRP ``alpha = 1``
  (App. A.1 in [1]); reported as sets/s and augmented images/s.

Each case runs ``--repeats`` times after one warm-up; the best time is reported. The load
average (``/proc/loadavg``) before the run is recorded, since the machine may be shared.

Run: ``python benchmarks/bench_augment.py [--threads 2] [--device cpu|cuda] [--images 4096]``

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro.data.augment import ImageAugment, augment_images  # noqa: E402
from gfncp_pyro.data.image_sets import instance_sets  # noqa: E402


def best_time(fn, repeats: int, device: torch.device) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--images", type=int, default=4096, help="images per augment_images call")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = Path("/proc/loadavg").read_text().split()[:3]
    generator = torch.Generator().manual_seed(0)
    config = ImageAugment()

    images = torch.rand(args.images, 1, 28, 28, generator=generator).to(device)
    seconds = best_time(lambda: augment_images(images, config, generator), args.repeats, device)
    lines = [
        f"device {device}, threads {args.threads}, load average before run {' '.join(load)}",
        f"augment_images, M = {args.images} 1x28x28, ImageAugment(): best {seconds * 1e3:.1f} ms, "
        f"{args.images / seconds:,.0f} images/s (target >= 10,000 on 2 CPU cores)",
    ]

    pool = torch.rand(60_000, 1, 28, 28, generator=generator).to(device)
    lengths = torch.randint(100, 1001, (64,), generator=torch.Generator().manual_seed(1))
    seconds = best_time(lambda: instance_sets(pool, lengths, 1.0, generator, augment=config), args.repeats, device)
    batch = instance_sets(pool, lengths, 1.0, torch.Generator().manual_seed(2), augment=config)
    points = int(lengths.sum())
    anchors = int((batch.labels.max(dim=1).values + 1).sum())
    lines.append(
        f"instance_sets, B = 64, N ~ U[100, 1000] ({points} points, ~{points - anchors} augmented), "
        f"alpha = 1, pool 60,000: best {seconds:.3f} s, {64 / seconds:.1f} sets/s, "
        f"{(points - anchors) / seconds:,.0f} augmented images/s"
    )
    record("augment", lines)


if __name__ == "__main__":
    main()
