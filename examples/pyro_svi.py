"""Training a GFNCP guide with Pyro's own machinery: SVI, CSIS and Predictive.

1. ``pyro.infer.SVI(model, guide, optim, TraceGraph_ELBO())`` on one data set: the ELBO of a
   fresh guide rises (computed exactly by enumerating all partitions, so no Monte Carlo noise);
2. ``pyro.infer.CSIS`` trains a fresh small guide on sets of up to 8 points simulated from the
   model, lowering its KL divergence to the exact posterior on held-out sets;
3. ``pyro.infer.Predictive(padded_model, guide=guide, num_samples=100)(x, replicate=True)``
   returns the posterior predictive in arrays of fixed shapes: ``c`` ``(100, 1, N)``, ``mu``
   ``(100, N, D)`` and replicated data sets ``x`` ``(100, N, D)``.

The model is the ``mog2d-small`` preset's (``alpha = 1, sigma_mu = 5, sigma_x = 1, D = 2``, read
from :func:`gfncp_pyro.config.preset` by :func:`gfncp_pyro.loading.model_for`)::

    python examples/pyro_svi.py [--svi-steps 300] [--csis-steps 400]

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] T. A. Le, A. G. Baydin, F. Wood. Inference Compilation and Universal Probabilistic
    Programming. AISTATS 2017 (CSIS).
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import CSIS, SVI, Predictive, TraceGraph_ELBO

from gfncp_pyro import AmortizedPartition, CRPMixture, GFNCPGuide, exact_posterior, infer
from gfncp_pyro.config import preset
from gfncp_pyro.loading import model_for
from gfncp_pyro.nn import EnergyNet, EnergyNetConfig
from gfncp_pyro.partitions import enumerate_partitions


def small_network(seed: int) -> EnergyNet:
    """A fresh network of the default architecture at a small width (trains in seconds)."""
    torch.manual_seed(seed)
    config = EnergyNetConfig(h_dim=32, g_dim=64, hidden=32, encoder_layers=3, g_layers=3, f_layers=3)
    return EnergyNet(config)


def exact_elbo_and_kl(model: CRPMixture, guide: GFNCPGuide, x: torch.Tensor) -> tuple[float, float]:
    """``ELBO = E_q[log p(c, x) - log q(c | x)]`` and ``KL(p(c | x) || q(c | x))`` by enumeration.

    The means are integrated out exactly by the guide, so the ELBO over ``(c, mu)`` equals this
    collapsed one.
    """
    exact = exact_posterior(x, model.alpha, model.sigma_mu, model.sigma_x)
    support = enumerate_partitions(x.shape[0])
    with torch.no_grad():
        q = AmortizedPartition(guide.network, x.to(next(guide.network.parameters())))
        log_q = q.log_prob(support).double()
    log_joint = infer.collapsed_log_joint(model, x, support)
    elbo = float((log_q.exp() * (log_joint - log_q)).sum())
    kl = float((exact.log_posterior.exp() * (exact.log_posterior - log_q)).sum())
    return elbo, kl


def run_svi(model, x, steps: int, seed: int) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = GFNCPGuide(model, small_network(seed).double())
    before, _ = exact_elbo_and_kl(model, guide, x)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 3e-3}), TraceGraph_ELBO(num_particles=4))
    for _ in range(steps):
        svi.step(x)
    after, _ = exact_elbo_and_kl(model, guide, x)
    return {"elbo_before": before, "elbo_after": after, "log_evidence": float(
        exact_posterior(x, model.alpha, model.sigma_mu, model.sigma_x).log_evidence)}


def run_csis(model, held_out: torch.Tensor, steps: int, max_points: int, seed: int) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = GFNCPGuide(model, small_network(seed + 1).double())
    kl_before = [exact_elbo_and_kl(model, guide, x)[1] for x in held_out]
    csis = CSIS(model, guide, pyro.optim.Adam({"lr": 3e-3}), training_batch_size=8)
    sizes = torch.randint(2, max_points + 1, (steps,), generator=torch.Generator().manual_seed(seed))
    for n in sizes.tolist():
        # CSIS simulates (c, mu, x) from the model; the observations passed here only set N.
        csis.step(observations={"x": torch.zeros(n, model.dim, dtype=torch.float64)})
    kl_after = [exact_elbo_and_kl(model, guide, x)[1] for x in held_out]
    return {"kl_before": sum(kl_before) / len(kl_before), "kl_after": sum(kl_after) / len(kl_after),
            "guide": guide}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="N of the SVI set and held-out sets (<= 10)")
    parser.add_argument("--svi-steps", type=int, default=300)
    parser.add_argument("--csis-steps", type=int, default=400)
    parser.add_argument("--held-out", type=int, default=5, help="held-out sets for the CSIS KL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default 1: tiny tensors, 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or 1)  # tiny tensors: one thread is fastest

    model = model_for(preset("mog2d-small"))
    sets = model.sample_batch(torch.full((args.held_out + 1,), args.points),
                              generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64).x
    svi = run_svi(model, sets[0], args.svi_steps, args.seed)
    print(f"SVI + TraceGraph_ELBO, {args.svi_steps} steps on one set of N={args.points}: exact ELBO "
          f"{svi['elbo_before']:.3f} -> {svi['elbo_after']:.3f} (log p(x) = {svi['log_evidence']:.3f})")
    csis = run_csis(model, sets[1:], args.csis_steps, args.points, args.seed)
    print(f"CSIS, {args.csis_steps} steps of 8 simulated sets (N <= {args.points}): mean KL(p || q) on "
          f"{args.held_out} held-out sets {csis['kl_before']:.3f} -> {csis['kl_after']:.3f} nats")

    padded = model.with_variant("padded")
    guide = GFNCPGuide(padded, csis.pop("guide").network)
    samples = Predictive(padded, guide=guide, num_samples=100)(sets[1], replicate=True)
    shapes = {name: tuple(value.shape) for name, value in samples.items()}
    print(f"Predictive(padded model, guide, num_samples=100)(x, replicate=True) shapes: {shapes} "
          "(x: replicated data sets)")
    return {**svi, **csis, "shapes": shapes}


if __name__ == "__main__":
    main()
