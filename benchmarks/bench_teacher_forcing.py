"""Speed of teacher forcing: log-probabilities, many orders, and the GFNCP training losses.

Default network sizes (``EnergyNetConfig()``: the paper's MoG model), 2-D MoG points
(cluster means ~ N(0, 10^2 I), points ~ N(mean, I)), partitions from a CRP with alpha = 6.

1. teacher-forced log-probability of one N = 300 set (target <= 50 ms);
2. 500 orders of one N = 20 set with ``log_prob_orders`` (target <= 1 s);
3. forward + backward of the GFNCP data-branch losses (MC + reg + CD with one re-scored
   partition standing in for the policy sample; drawing that sample is not timed) at batch 64,
   N = 100, the sample re-scored by a full teacher-forced pass or by ``partition_energy``
   (FLOPs of the latter's K-row pass are not counted);
4. achieved GFLOP/s of the network work in each case, next to a plain matmul's: one of the
   same shape as the dominant layers (rows x 128 x 128) and a 2048^3 one.

FLOPs count only the network's linear layers (2 per multiply-add) on the rows actually
evaluated; backward is counted as twice the forward.

Run: ``python benchmarks/bench_teacher_forcing.py [--repeats 5] [--threads 2] [--device cpu]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from gfncp_pyro.distributions.crp import sample_crp_labels  # noqa: E402
from gfncp_pyro.losses import (  # noqa: E402
    contrastive_divergence,
    energy_regularizer,
    final_energy,
    marginal_consistency,
)
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig  # noqa: E402
from gfncp_pyro.policy import (  # noqa: E402
    log_prob_orders,
    partition_energy,
    teacher_force,
    trajectory_log_prob,
)


def mog_points(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """2-D MoG points ``(B, N, 2)`` for canonical labels ``(B, N)`` (0 at padding)."""
    batch, n = labels.shape
    means = 10 * torch.randn(batch, n, 2, generator=gen)
    index = labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2)
    points = means.gather(1, index) + torch.randn(batch, n, 2, generator=gen)
    return torch.where((labels >= 0).unsqueeze(-1), points, 0.0)


def linear_macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def pass_flops(net: EnergyNet, points: int, steps: int, rows: int) -> int:
    """Forward FLOPs of one teacher-forced pass: encoders per point, U projection per step,
    g (last layer fused with f's first) and the rest of f per candidate row."""
    cfg = net.config
    encoders = linear_macs(net.h) + linear_macs(net.u)
    fused = cfg.hidden * cfg.hidden
    per_row = linear_macs(net.g[:-1]) + fused + linear_macs(net.f_net[1:])
    return 2 * (points * encoders + steps * cfg.hidden * cfg.h_dim + rows * per_row)


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    net = EnergyNet(EnergyNetConfig()).to(device)
    lines = [f"device {device}, {torch.get_num_threads()} threads, median of {args.repeats}"]

    def report(name: str, seconds: float, flops: int, target: str = "") -> None:
        rate = flops / seconds / 1e9
        lines.append(f"{name:<50} {seconds * 1e3:9.1f} ms {rate:7.1f} GFLOP/s {target}")

    # 1. one set of N = 300
    labels = sample_crp_labels(6.0, torch.tensor([300]), gen)
    x = mog_points(labels, gen)
    labels, x = labels.to(device), x.to(device)
    with torch.no_grad():
        steps = teacher_force(net, x, labels)
        rows = int(steps.candidate_mask.sum())
        seconds = timed(lambda: trajectory_log_prob(teacher_force(net, x, labels)), args.repeats,
                        device)
    report(f"log_prob N=300 (K={int(labels.max()) + 1}, {rows} rows)", seconds,
           pass_flops(net, 300, 300, rows), "(target <= 50 ms)")

    # 2. 500 orders of one set of N = 20
    labels = sample_crp_labels(6.0, torch.tensor([20]), gen)
    x = mog_points(labels, gen)[0].to(device)
    labels = labels[0].to(device)
    orders = torch.rand(500, 20, generator=gen).argsort(1).to(device)
    with torch.no_grad():
        seconds = timed(lambda: log_prob_orders(net, x, labels, orders), args.repeats, device)
        rows = int(teacher_force(net, x.expand(500, -1, -1), labels.expand(500, -1),
                                 orders=orders).candidate_mask.sum())
    report(f"log_prob_orders 500 x N=20 (K={int(labels.max()) + 1})", seconds,
           pass_flops(net, 20, 500 * 20, rows), "(target <= 1 s)")

    # 3. GFNCP losses, forward + backward, batch 64, N = 100
    data = sample_crp_labels(6.0, torch.full((64,), 100), gen)
    x = mog_points(data, gen).to(device)
    data = data.to(device)
    sample = sample_crp_labels(6.0, torch.full((64,), 100), gen).to(device)  # stands in

    def losses_step(rescore) -> None:
        net.zero_grad(set_to_none=True)
        steps = teacher_force(net, x, data)
        final = final_energy(steps)
        loss = (marginal_consistency(steps) + 0.6 * energy_regularizer(final)
                + 0.4 * contrastive_divergence(final, rescore())).mean()
        loss.backward()

    with torch.no_grad():
        rows_data = int(teacher_force(net, x, data).candidate_mask.sum())
        rows_sample = int(teacher_force(net, x, sample).candidate_mask.sum())
    rows = rows_data + rows_sample
    seconds = timed(lambda: losses_step(lambda: final_energy(teacher_force(net, x, sample))),
                    args.repeats, device)
    report("losses fwd+bwd B=64 N=100, CD by teacher_force", seconds,
           3 * pass_flops(net, 2 * 6400, 2 * 6400, rows))
    seconds = timed(lambda: losses_step(lambda: partition_energy(net, x, sample)), args.repeats,
                    device)
    report("losses fwd+bwd B=64 N=100, CD by partition_energy", seconds,
           3 * pass_flops(net, 6400, 6400, rows_data))

    # 4. plain matmuls
    a = torch.randn(rows_data, 128, device=device)
    w = torch.randn(128, 128, device=device)
    seconds = timed(lambda: a @ w, args.repeats, device)
    report(f"plain matmul ({rows_data} x 128) @ (128 x 128)", seconds, 2 * a.shape[0] * 128 * 128)
    big = torch.randn(2048, 2048, device=device)
    seconds = timed(lambda: big @ big, args.repeats, device)
    report("plain matmul 2048^3", seconds, 2 * 2048**3)
    record("teacher_forcing", lines)


if __name__ == "__main__":
    main()
