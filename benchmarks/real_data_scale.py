"""``gfncp cluster --scale auto`` on real data sets: NMI and number of clusters with and without it
(not a speed benchmark).

For scikit-learn's iris, wine, breast cancer and digits: standardise, project on 2 principal
components, multiply by ``--factors`` (1, 3 and 0.3: the same data in other units), and cluster
every point of each data set with the shipped 2-D models by greedy decoding, as ``gfncp cluster``
does: the points as given (``--scale none``) and rescaled by
:func:`gfncp_pyro.scale.estimate_scale` (``--scale auto``). NMI against the true classes, the
number of clusters found (true: 3, 3, 2, 10) and the auto factor are printed and recorded in
``benchmarks/results/real_data_scale.md``.

Run: ``python benchmarks/real_data_scale.py [--factors 1 3 0.3 --models mog2d-small:gfncp ...]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _record import record  # noqa: E402

from gfncp_pyro import decoding  # noqa: E402
from gfncp_pyro.pretrained import load_pretrained  # noqa: E402
from gfncp_pyro.scale import estimate_scale  # noqa: E402

MODELS = ["mog2d-small:gfncp", "mog2d-small:ncp", "mog2d-cpu:gfncp"]


def _data_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("cancer", load_breast_cancer),
                         ("digits", load_digits)):
        features, labels = loader(return_X_y=True)
        out[name] = (PCA(2, random_state=0).fit_transform(StandardScaler().fit_transform(features)), labels)
    return out


def main() -> None:
    from sklearn.metrics import normalized_mutual_info_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 3.0, 0.3])
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = _data_sets()
    lines = ["data: standardised, 2 PCA components, times the factor; every point of the data set clustered by greedy "
             "decoding; cell: NMI / clusters found (true K in the header); auto: the factor --scale auto chose",
             ""]
    header = f"{'model':<20}{'factor':>7}  " + "".join(
        f"{f'{name} (K={len(set(y.tolist()))}) none':>22}{'auto':>14}{'s_auto':>8}" for name, (_, y) in data.items())
    lines.append(header)
    gains = {factor: [] for factor in args.factors}
    start = time.perf_counter()
    for spec in args.models:
        name, objective = spec.split(":")
        net, config = load_pretrained(name, objective, with_config=True)
        mixture = config.mixture()
        for factor in args.factors:
            cells = []
            for points, truth in data.values():
                x = torch.as_tensor(points * factor, dtype=torch.float64)
                estimate = estimate_scale(x, net, mixture)
                results = []
                for inputs in (x, estimate.factor * (x - estimate.centre)):
                    with torch.no_grad():
                        labels, _ = decoding.greedy(net, inputs.float())
                    results.append((normalized_mutual_info_score(truth, labels.numpy()), int(labels.max()) + 1))
                gains[factor].append(results[1][0] - results[0][0])
                cells.append(f"{results[0][0]:>17.3f} / {results[0][1]:<2d}{results[1][0]:>9.3f} / {results[1][1]:<2d}"
                             f"{estimate.factor:>8.3g}")
            lines.append(f"{spec:<20}{factor:>7g}  " + "".join(cells))
    lines.append("")
    for factor, values in gains.items():
        lines.append(f"factor {factor:g}: mean NMI(auto) - NMI(none) over models and data sets = "
                     f"{statistics.fmean(values):+.3f} (n = {len(values)})")
    lines.append(f"elapsed {time.perf_counter() - start:.0f} s")
    record("real_data_scale", lines)


if __name__ == "__main__":
    main()
