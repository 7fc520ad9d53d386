"""The paper's evaluation protocol for Gaussian mixtures (Sec. 5 and App. A.2 in [1]).

``num_sets`` seeded test sets of ``N`` points are drawn from the model the network was trained
for (one generator for the whole run: every set differs), clustered by greedy decoding along the
identity order, and scored by NMI and ARI against the true partition; MC is Eq. (24) of the true
partition; SDPP (Eq. 32) is computed on the first ``sdpp_sets`` sets.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import statistics

import torch
from tqdm.auto import tqdm

from . import decoding, metrics
from .config import TrainConfig
from .models import CRPMixture
from .nn import EnergyNet

__all__ = ["evaluate", "summarize"]


def summarize(values: list[float]) -> dict:
    """Mean, std (sample), median, min, max and count of a list of numbers."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def evaluate(
    net: EnergyNet,
    config: TrainConfig,
    num_sets: int = 3000,
    num_points: int = 300,
    seed: int = 12345,
    batch_size: int = 64,
    sdpp_sets: int = 20,
    sdpp_orders: int = 500,
    progress: bool = True,
) -> dict:
    """Evaluate ``net`` on seeded test sets from the data model of ``config``.

    :returns: a JSON-ready dict: ``{"nmi": summary, "ari": ..., "mc_paper": ..., "mc_consistent": ...,
        "sdpp": ..., "protocol": {...}}`` with summaries from :func:`summarize`.
    """
    if num_sets < 1 or num_points < 1:
        raise ValueError(f"num_sets and num_points must be >= 1, got {num_sets} and {num_points}")
    mixture = CRPMixture(config.alpha, config.sigma_mu, config.sigma_x, config.dim)
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    scores = {"nmi": [], "ari": [], "mc_paper": [], "mc_consistent": [], "sdpp": [], "clusters_true": [],
              "clusters_pred": []}
    net.eval()
    bar = tqdm(total=num_sets, disable=not progress, desc="evaluate", dynamic_ncols=True)
    done = 0
    while done < num_sets:
        size = min(batch_size, num_sets - done)
        batch = mixture.sample_batch(torch.full((size,), num_points), generator=generator, dtype=dtype, device=device)
        pred, _ = decoding.greedy(net, batch.x, mask=batch.mask)
        b_nmi, b_ari = metrics.batch_nmi_ari(batch.labels, pred, batch.mask)
        scores["nmi"] += b_nmi
        scores["ari"] += b_ari
        for flow in ("paper", "consistent"):
            mc = metrics.marginal_consistency_metric(net, batch.x, batch.labels, batch.mask, flow=flow)
            scores[f"mc_{flow}"] += mc.tolist()
        scores["clusters_true"] += (batch.labels.max(1).values + 1).tolist()
        scores["clusters_pred"] += (pred.max(1).values + 1).tolist()
        for i in range(max(0, min(size, sdpp_sets - done))):
            with torch.no_grad():
                result = metrics.sdpp(net, batch.x[i], batch.labels[i], sdpp_orders, generator=seed + done + i)
            scores["sdpp"].append(float(result.value))
        done += size
        bar.update(size)
    bar.close()
    report = {name: summarize(values) for name, values in scores.items() if values}
    report["protocol"] = {
        "num_sets": num_sets, "num_points": num_points, "seed": seed, "decoding": "greedy, identity order",
        "sdpp_sets": min(sdpp_sets, num_sets), "sdpp_orders": sdpp_orders,
        "data": {"alpha": config.alpha, "sigma_mu": config.sigma_mu, "sigma_x": config.sigma_x, "dim": config.dim},
    }
    return report
