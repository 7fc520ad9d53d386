"""``python -m validation.exact --N 8``: the exact posterior over partitions of small data sets.

Draws seeded data sets from the Pyro model of Eq. (1) in [1] (by default with the hyper-parameters
the models were trained for: the ``mog2d-small`` preset, D = 2, alpha = 1, sigma_mu = 5,
sigma_x = 1), enumerates all Bell(N) partitions (or runs the subset DP with ``--dp``), and
compares GFNCP's and NCP's q(c | x) with the exact posterior: divergences along the identity
order and averaged over random orders, MAP agreement, mass on the exact top-10, SDPP (Eq. 32),
MC (Eq. 24), and importance sampling with q as proposal. Prints one table, writes PNGs and,
with ``--json``, a JSON report (schema in README.md).

The command line of :func:`validation.validate` (:mod:`validation.report`): the flags are parsed
and checked here, the output paths before any work; the report's ``table()`` is printed, its
``plot(--out)`` drawn and its ``to_json()`` written atomically to ``--json``.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gfncp_pyro.checkpoint import CheckpointError
from gfncp_pyro.commands import HYPER_RANGE, OneLineParser, UserError, hyper_parameter, int_at_least, seed_value
from gfncp_pyro.exact import exact_posterior
from gfncp_pyro.interrupts import run_interruptible
from gfncp_pyro.loading import ModelMismatchError
from gfncp_pyro.outputs import check_output_dir, check_output_file, write_atomic
from gfncp_pyro.partitions import MAX_ENUMERATION_N, bell_number
from gfncp_pyro.subset_dp import MAX_DP_N

from .report import validate

__all__ = ["exact_posterior", "main", "HYPER_RANGE"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m validation.exact",
        description="GFNCP and NCP against the exact posterior over all partitions of small data sets.",
    )
    parser.add_argument("--N", type=int_at_least(1), default=8, help=f"points per data set (1..{MAX_ENUMERATION_N} by "
                        f"enumeration, up to {MAX_DP_N} with the subset DP)")
    parser.add_argument("--datasets", type=int_at_least(1), default=50, help="number of seeded data sets")
    parser.add_argument("--seed", type=seed_value, default=0, help="seed of the data sets and of all sampling")
    parser.add_argument("--alpha", type=hyper_parameter, default=None, help="CRP concentration (default: the models')")
    parser.add_argument("--sigma-mu", type=hyper_parameter, default=None, help="prior std of cluster means")
    parser.add_argument("--sigma-x", type=hyper_parameter, default=None, help="std of points around their means")
    parser.add_argument("--gfncp", default="pretrained:mog2d-small:gfncp", help="GFNCP checkpoint ('none': skip)")
    parser.add_argument("--ncp", default="pretrained:mog2d-small:ncp", help="NCP checkpoint ('none': skip)")
    parser.add_argument("--no-models", action="store_true", help="exact posterior only")
    parser.add_argument("--data", type=Path, default=None, help="a .npy file of points (N, 2) instead of "
                        "model draws")
    parser.add_argument("--orders", type=int_at_least(0), default=4, help="random orders R for q averaged over orders")
    parser.add_argument("--importance", type=int_at_least(1), default=1000, help="importance samples per data set")
    parser.add_argument("--sdpp-orders", type=int_at_least(1), default=500, help="orders for SDPP (Eq. 32)")
    parser.add_argument("--dp", action="store_true", help="use the subset DP even for N <= 12")
    parser.add_argument("--force", action="store_true", help="run models trained for other hyper-parameters")
    parser.add_argument("--out", type=Path, default=Path("out/validation"), help="directory for the PNGs")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _read_data(path: Path) -> np.ndarray:
    """The points of ``--data`` (a ``.npy`` file); their shape is checked by :func:`validate`."""
    if not path.is_file():
        raise UserError(f"--data file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UserError(f"--data {path} is not a readable .npy array ({err})") from None
    if x.dtype.kind not in "iuf":
        raise UserError(f"--data {path} holds {x.dtype} values; the points must be real numbers")
    if not np.isfinite(x).all():
        raise UserError(f"--data {path} contains NaN or infinite values")
    return x


def _check_size(n: int, dp: bool, from_data: bool) -> None:
    """``--N`` (or the points of ``--data``) within reach: enumeration, or the DP with ``--dp``."""
    if not from_data and not 1 <= n <= MAX_DP_N:
        raise UserError(f"--N must lie in 1..{MAX_ENUMERATION_N} (enumeration) or up to {MAX_DP_N} with --dp, "
                        f"got {n}")
    if MAX_ENUMERATION_N < n <= MAX_DP_N and not dp:
        raise UserError(f"N={n} has Bell({n}) = {bell_number(n):.3g} partitions, beyond enumeration "
                        f"(N <= {MAX_ENUMERATION_N}); add --dp for the subset dynamic programme (N <= {MAX_DP_N})")


def _command(args: argparse.Namespace) -> int:
    """The command: output paths checked first, then :func:`validate`, then its outputs."""
    if args.json is not None:
        check_output_file(args.json, "--json")
    check_output_dir(args.out, "--out")
    data = _read_data(args.data) if args.data is not None else None
    _check_size(data.shape[0] if data is not None and data.ndim == 2 else args.N, args.dp, data is not None)
    models = {} if args.no_models else {name: spec for name, spec in (("GFNCP", args.gfncp), ("NCP", args.ncp))
                                        if spec != "none"}
    try:
        report = validate(models, N=args.N, datasets=args.datasets, seed=args.seed, data=data, alpha=args.alpha,
                          sigma_mu=args.sigma_mu, sigma_x=args.sigma_x, orders=args.orders,
                          importance=args.importance, sdpp_orders=args.sdpp_orders, dp=args.dp, force=args.force,
                          progress=not args.no_progress)
    except ModelMismatchError as err:
        raise UserError(f"{err} (here: pass --force)" if "force=True" in str(err) else str(err)) from None
    print()
    print(report.table())
    sys.stdout.flush()
    if report.plot(args.out):
        print(f"wrote figures to {args.out}/")
    if args.json is not None:
        write_atomic(args.json, json.dumps(report.to_json(), indent=2))
        print(f"wrote {args.json}")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    try:
        return _command(args)
    except (ValueError, CheckpointError, UserError, OverflowError) as err:
        return _fail(" ".join(str(err).split()))


def main(argv: list[str] | None = None) -> int:
    """Run the validation; user mistakes exit with 2, Ctrl-C with 130, SIGTERM with 143."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse already printed its one line (or --help)
        return int(exit_.code or 0)
    # Many small teacher-forcing and decoding calls: one thread avoids OpenMP spin-waiting,
    # which makes two threads many times slower on a busy machine.
    torch.set_num_threads(1)
    return run_interruptible(lambda: _run(args), "python -m validation.exact")


if __name__ == "__main__":
    sys.exit(main())
