"""Points to cluster from files: ``.csv`` (or ``.txt``), ``.npy`` and ``.npz``.

:func:`read_points` accepts exactly one real-valued ``(N, D)`` array and turns every other
content (text, objects, pickles, complex numbers, NaN, a missing file, random bytes) into one
:class:`PointsFileError` that says what was found and what is expected.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["PointsFileError", "read_points", "POINT_ARRAYS"]

POINT_ARRAYS = ("points", "features", "x")
"""Array names looked up, in this order, in an ``.npz`` with several arrays."""


class PointsFileError(ValueError):
    """A points file that cannot be read as a real-valued ``(N, D)`` array."""


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def _load_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            return np.load(handle, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError, OSError, EOFError, ... for foreign bytes
        raise PointsFileError(f"{path} is not a readable .npy array of numbers ({_first_line(err)}); save it with "
                              "numpy.save(path, points) where points is a float array (N, D)") from None


def _load_npz(path: Path) -> np.ndarray:
    try:  # our own handle: numpy leaves its file open when a corrupt archive fails to open
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise PointsFileError(f"{path} is an empty .npz archive; it must hold the points (N, D)")
            name = names[0] if len(names) == 1 else next((n for n in POINT_ARRAYS if n in names), None)
            if name is None:
                raise PointsFileError(f"{path} holds arrays {names[:8]}; name the points {' or '.join(POINT_ARRAYS)} "
                                      "(or store only one array)")
            return archive[name]
    except PointsFileError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError (pickled arrays), OSError, ...
        raise PointsFileError(f"{path} is not a readable .npz archive of numbers ({_first_line(err)}); save it with "
                              "numpy.savez(path, points=points)") from None


def _load_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as err:
        raise PointsFileError(f"{path} is not a text file ({_first_line(err)}); a .csv must hold one point per line, "
                              "coordinates separated by commas") from None
    if not text.strip():
        raise PointsFileError(f"{path} is empty; it must hold one point per line, coordinates separated by commas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except Exception as err:  # ValueError for text, unequal rows, ...
            raise PointsFileError(
                f"{path}: {_first_line(err).split(': ', 1)[-1]}; the CSV must hold numbers only "
                "(no header line, no missing values), one point per line"
            ) from None


def read_points(path) -> np.ndarray:
    """Read points ``(N, D)`` as float64 from a ``.csv``/``.txt`` (numbers only, comma-separated,
    no header), a ``.npy`` (one array) or an ``.npz`` (one array, or one named ``points``,
    ``features`` or ``x``).

    :raises PointsFileError: missing or empty file, unknown suffix, unreadable content, an array
        that is not 2-D with ``N, D >= 1``, not real numbers (strings, objects, booleans,
        complex), or not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise PointsFileError(f"input file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".npy", ".npz"):
        raise PointsFileError(f"input must be a .csv, .npy or .npz file, got {path.name}")
    if path.stat().st_size == 0:
        raise PointsFileError(f"{path} is empty (0 bytes)")
    points = {".npy": _load_npy, ".npz": _load_npz}.get(suffix, _load_csv)(path)
    if not isinstance(points, np.ndarray) or points.dtype.kind not in "iuf":
        kind = points.dtype if isinstance(points, np.ndarray) else type(points).__name__
        raise PointsFileError(f"{path} holds {kind} values; the points must be real numbers (integers or floats)")
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] == 0:
        hint = "; for 1-D points use points.reshape(-1, 1)" if points.ndim == 1 else ""
        raise PointsFileError(f"{path} must hold a 2-D array of points (N, D) with N, D >= 1, got shape "
                              f"{points.shape}{hint}")
    points = points.astype(np.float64)
    if not np.isfinite(points).all():
        raise PointsFileError(f"{path} contains NaN or infinite values (missing entries?)")
    return points
