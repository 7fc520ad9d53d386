"""Labelled pools of points (images or embeddings) and their splits into train / held-out pools.

A :class:`LabeledPool` is the raw material of the image and embedding set generators: ``n``
points with one class id each. Instance-discrimination training (Sec. 4.3 in [1]) draws sets
from a training pool; evaluation draws sets of real images from a held-out pool, split either
by index (:func:`index_split`, e.g. MNIST test images 0..4999 vs 5000..9999) or by class
(:func:`class_split`, unseen classes, e.g. 20 of Omniglot's 40 classes vs the other 20).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import numbers
import re
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .._checks import check_int

__all__ = ["LabeledPool", "check_pool", "index_split", "parse_range", "class_split"]


class LabeledPool(NamedTuple):
    """``n`` points with a class id each.

    ``len(pool)`` is the number of points ``n`` (not the tuple's length 2); unpacking
    ``points, labels = pool`` works as for any tuple. Because ``len`` is overridden, the
    namedtuple helpers ``_make`` / ``_replace`` do not work: build a new pool with
    ``LabeledPool(points, labels)`` instead.

    :ivar torch.Tensor points: ``(n, *point_shape)`` float: images ``(n, 1, H, W)`` in
        ``[0, 1]`` or embeddings ``(n, d)``.
    :ivar torch.Tensor labels: ``(n,)`` long class ids ``>= 0``, as in the source file (not
        necessarily contiguous).
    """

    points: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def point_shape(self) -> tuple[int, ...]:
        """The shape of one point, ``points.shape[1:]``."""
        return tuple(self.points.shape[1:])

    @property
    def classes(self) -> torch.Tensor:
        """``(K,)`` the sorted distinct class ids present in the pool."""
        return torch.unique(self.labels, sorted=True)

    def subset(self, index) -> "LabeledPool":
        """The pool restricted to ``index``: a bool mask ``(n,)`` or integer indices ``(m,)`` in
        ``0..n-1`` (kept in the given order, repeats allowed)."""
        n = len(self)
        index = torch.as_tensor(index, device=self.labels.device)
        if index.ndim != 1:
            raise ValueError(
                f"index must be a 1-D bool mask (n,) or 1-D integer indices, got shape "
                f"{tuple(index.shape)}"
            )
        if index.dtype == torch.bool:
            if index.shape[0] != n:
                raise ValueError(
                    f"index is a bool mask of length {index.shape[0]} but the pool has {n} "
                    "points; pass a mask of length len(pool)"
                )
        elif index.numel() == 0:
            index = index.long()
        elif index.is_floating_point() or index.is_complex():
            raise ValueError(f"index must be a bool mask or integer indices, got dtype {index.dtype}")
        elif bool(((index < 0) | (index >= n)).any()):
            raise ValueError(
                f"index holds values outside 0..{n - 1} (the pool has {n} points): "
                f"min {int(index.min())}, max {int(index.max())}"
            )
        return LabeledPool(self.points[index], self.labels[index])


def _to_labels(values, name: str) -> torch.Tensor:
    """Class ids from an array or tensor: 1-D, integer-valued, ``>= 0``, returned as long."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be integer class ids, got dtype {values.dtype}")
        # A writable copy (arrays read from buffers are read-only, which torch warns about).
        values = torch.from_numpy(values.astype(np.float64 if values.dtype.kind == "f" else np.int64))
    values = torch.as_tensor(values)
    if values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"{name} must be integer class ids, got dtype {values.dtype}")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {tuple(values.shape)}")
    if values.is_floating_point():
        if not bool((torch.isfinite(values) & (values == values.round())).all()):
            raise ValueError(
                f"{name} holds non-integer values (e.g. 1.5, NaN or inf); class ids must be whole "
                "numbers >= 0"
            )
    if values.numel() and int(values.min()) < 0:
        raise ValueError(f"{name} holds negative class ids (min {int(values.min())}); ids must be >= 0")
    return values.long()


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` archive ``path`` (no pickled objects are loaded)."""
    try:
        with open(path, "rb") as stream:  # our own handle: closed even when numpy fails
            archive = np.load(stream, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array")
            with archive:
                missing = [key for key in keys if key not in archive.files]
                if missing:
                    raise KeyError(f"it lacks {missing}; expected {list(keys)}, found {archive.files}")
                return {key: archive[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        reason = err.args[0] if isinstance(err, KeyError) else err
        raise ValueError(f"cannot read {str(path)!r} as an .npz archive: {reason}") from None


def check_pool(pool, name: str = "pool") -> LabeledPool:
    """Validate a pool and return it as a :class:`LabeledPool` with ``long`` labels.

    :param pool: a :class:`LabeledPool` or a pair ``(points, labels)``.
    :param str name: how to call the argument in error messages.
    :raises ValueError: unless ``points`` is a floating-point tensor ``(n, *point_shape)`` with
        finite values and ``labels`` an integer tensor ``(n,)`` of ids ``>= 0`` on the same device.
    """
    if not isinstance(pool, LabeledPool) and not (isinstance(pool, tuple) and len(pool) == 2):
        raise ValueError(
            f"{name} must be a LabeledPool(points, labels) or a pair (points, labels), got "
            f"{type(pool).__name__}"
        )
    points, labels = pool
    if not isinstance(points, torch.Tensor) or not points.is_floating_point():
        raise ValueError(
            f"{name}.points must be a floating-point torch.Tensor (n, *point_shape), got "
            f"{getattr(points, 'dtype', type(points).__name__)}"
        )
    if points.ndim < 2:
        raise ValueError(
            f"{name}.points has shape {tuple(points.shape)}; expected (n, *point_shape), e.g. "
            "(n, 1, 28, 28) images or (n, d) embeddings"
        )
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        raise ValueError(
            f"{name}.labels must be an integer torch.Tensor (n,), got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if labels.ndim != 1 or labels.shape[0] != points.shape[0]:
        raise ValueError(
            f"{name}.labels has shape {tuple(labels.shape)} but {name}.points has "
            f"{points.shape[0]} points; expected labels of shape ({points.shape[0]},)"
        )
    if labels.device != points.device:
        raise ValueError(
            f"{name}.points is on {points.device} but {name}.labels on {labels.device}; move "
            "both to one device"
        )
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name}.points holds NaN or inf values; clean the data first")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(
            f"{name}.labels holds negative class ids (min {int(labels.min())}); ids must be >= 0"
        )
    return LabeledPool(points, labels.long())


def index_split(pool: LabeledPool, start: int, stop: int) -> tuple[LabeledPool, LabeledPool]:
    """Split by position: ``(points[start:stop], the other points)`` with their labels.

    The second pool keeps the order of the source (``0..start-1`` then ``stop..n-1``). E.g. the
    MNIST test split as a training pool of images ``0..4999`` and a held-out pool of
    ``5000..9999``: ``index_split(pool, 0, 5000)``.

    :param LabeledPool pool: ``n`` points.
    :param int start: first index of the first pool, ``0 <= start < stop``.
    :param int stop: one past its last index, ``stop <= n``.
    :returns: ``(inside, rest)`` of sizes ``stop - start`` and ``n - (stop - start)``.
    """
    pool = check_pool(pool)
    n = len(pool)
    start, stop = check_int(start, "start"), check_int(stop, "stop")
    if not 0 <= start < stop <= n:
        raise ValueError(
            f"need 0 <= start < stop <= n = {n} (the pool's size), got start={start}, stop={stop}"
        )
    inside = torch.zeros(n, dtype=torch.bool, device=pool.labels.device)
    inside[start:stop] = True
    return pool.subset(inside), pool.subset(~inside)


_RANGE = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def parse_range(text: str) -> tuple[int, int]:
    """Parse ``"start:stop"`` (e.g. from a command line) into ``(start, stop)``.

    :param str text: two non-negative integers separated by a colon, ``start < stop``, e.g.
        ``"0:5000"``.
    """
    match = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"range must be a string 'start:stop' of two non-negative integers, e.g. '0:5000', "
            f"got {text!r}"
        )
    start, stop = int(match.group(1)), int(match.group(2))
    if start >= stop:
        raise ValueError(f"range {text!r} is empty: need start < stop, e.g. '0:5000'")
    return start, stop


def class_split(pool: LabeledPool, train_classes: int | Sequence[int] | torch.Tensor
                ) -> tuple[LabeledPool, LabeledPool]:
    """Split by class: ``(the points of train_classes, the points of every other class)``.

    No point of a held-out class is in the first pool, and the two pools together hold every
    point of ``pool`` (each keeps the source order).

    :param LabeledPool pool: ``n`` points.
    :param train_classes: class ids present in ``pool`` (a sequence or 1-D integer tensor,
        duplicates ignored), or an ``int k``: the ``k`` smallest class ids,
        ``1 <= k <= len(pool.classes)``.
    :returns: ``(train, held_out)``.
    """
    pool = check_pool(pool)
    classes = pool.classes
    if isinstance(train_classes, numbers.Integral) and not isinstance(train_classes, bool):
        k = int(train_classes)
        if not 1 <= k <= classes.numel():
            raise ValueError(
                f"train_classes = {k} asks for the {k} smallest class ids, but the pool has "
                f"{classes.numel()} classes; pass 1 <= k <= {classes.numel()}"
            )
        chosen = classes[:k]
    else:
        if isinstance(train_classes, (str, bytes)) or not isinstance(
                train_classes, (Sequence, torch.Tensor, np.ndarray)):
            raise ValueError(
                f"train_classes must be an int k or a sequence of class ids, got {train_classes!r}"
            )
        chosen = torch.as_tensor(train_classes, device=classes.device)
        if chosen.ndim != 1 or chosen.numel() == 0 or chosen.is_floating_point() \
                or chosen.is_complex() or chosen.dtype == torch.bool:
            raise ValueError(
                f"train_classes must be a non-empty 1-D sequence of integer class ids, got "
                f"{train_classes!r}"
            )
        unknown = chosen[~torch.isin(chosen, classes)]
        if unknown.numel():
            raise ValueError(
                f"train_classes holds class ids not in the pool: {sorted(set(unknown.tolist()))}; "
                f"the pool's classes are {classes.tolist()}"
            )
    inside = torch.isin(pool.labels, chosen)
    return pool.subset(inside), pool.subset(~inside)
