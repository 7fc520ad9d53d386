"""GFNCP and NCP against the exact posterior on small subsets of real data sets (not a speed benchmark).

For scikit-learn's iris, wine and digits: standardise, project on 2 principal components, scale by
``--scale`` (2 by default, so that clusters are a few sigma_x apart as in the ``mog2d-small``
model), draw ``--subsets`` random subsets of N = 8 points (numpy ``default_rng(seed)``), enumerate
the exact posterior of the shipped models' CRP mixture (alpha 1, sigma_mu 5, sigma_x 1) and
score the shipped models (``--models``, objective names of ``pretrained:mog2d-small:NAME``) with
``validation.compare.compare_one`` (TV of q along the identity
order, TV of the normalised learned reward, SDPP of the exact MAP over 100 orders). Means over the
subsets are printed and recorded in ``benchmarks/results/real_data_exact.md``.

Run: ``python benchmarks/real_data_exact.py [--subsets 20 --seed 0 --scale 2 --models gfncp ncp ncp_orders4]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _record import record  # noqa: E402

from gfncp_pyro.exact import exact_posterior  # noqa: E402
from gfncp_pyro.models import CRPMixture  # noqa: E402
from gfncp_pyro.pretrained import load_pretrained  # noqa: E402
from validation.compare import compare_one  # noqa: E402


def main() -> None:
    from sklearn.datasets import load_digits, load_iris, load_wine
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--models", nargs="+", default=["gfncp", "ncp", "ncp_orders4"],
                        help="shipped mog2d-small objectives to score")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mixture = CRPMixture(1.0, 5.0, 1.0, 2)
    nets = {name: load_pretrained("mog2d-small", name).double() for name in args.models}
    lines = [f"{args.subsets} random subsets of N = 8 per data set, standardised, 2 PCA components x {args.scale}, "
             f"seed {args.seed}; exact posterior of CRPMixture(1, 5, 1); means over subsets"]
    for data, loader in (("iris", load_iris), ("wine", load_wine), ("digits", load_digits)):
        X, _ = loader(return_X_y=True)
        Z = PCA(2).fit_transform(StandardScaler().fit_transform(X)) * args.scale
        rng = np.random.default_rng(args.seed)
        scores = {name: {"tv": [], "reward_tv": [], "sdpp_map": []} for name in nets}
        for i in range(args.subsets):
            x = torch.tensor(Z[rng.choice(len(Z), 8, replace=False)], dtype=torch.float64)
            exact = exact_posterior(x, 1.0, likelihood=mixture.likelihood)
            orders = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(10 * i + j))
                                  for j in range(4)])
            for name, net in nets.items():
                result = compare_one(net, x, exact, exact.labels[0], orders, 200, 100, torch.Generator().manual_seed(i))
                for key in scores[name]:
                    scores[name][key].append(result[key])
        for name, values in scores.items():
            lines.append(f"{data:<6} {name:<11} " + "  ".join(f"{k} {statistics.fmean(v):.3f}" for k, v in values.items()))
    record("real_data_exact", lines)


if __name__ == "__main__":
    main()
