"""Image pools from files: MNIST-style IDX files and ``.npz`` archives (e.g. Omniglot).

Every loader returns a :class:`~gfncp_pyro.data.pools.LabeledPool` with images
``(n, 1, size, size)`` float32 in ``[0, 1]``, bright strokes on a dark background (the MNIST
convention the conv encoder of Sec. 4.3 in [1] is trained on), and long class ids. Paths always
come from the caller; the library assumes no data location.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] Y. LeCun, C. Cortes, C. Burges. The MNIST database of handwritten digits (IDX format).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .pools import LabeledPool, _read_npz, _to_labels

__all__ = ["load_idx", "load_image_npz", "load_images"]

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols)
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (n,)


def _find_one(directory: Path, kind: str, ndim: int) -> Path:
    # Both the official "-idx3-ubyte" and the common ".idx3-ubyte" spellings, raw or gzipped.
    stem = f"{kind}[-.]idx{ndim}-ubyte"
    found = sorted(directory.glob(f"*{stem}")) + sorted(directory.glob(f"*{stem}.gz"))
    expected = f"'*{kind}-idx{ndim}-ubyte' or '*{kind}-idx{ndim}-ubyte.gz'"
    if not found:
        raise ValueError(
            f"directory {str(directory)!r} holds no IDX {kind} file; expected one file named "
            f"{expected} (e.g. t10k-{kind}-idx{ndim}-ubyte.gz from the MNIST site)"
        )
    if len(found) > 1:
        raise ValueError(
            f"directory {str(directory)!r} holds several IDX {kind} files "
            f"{[p.name for p in found]}; keep exactly one file named {expected}"
        )
    return found[0]


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in an IDX file (gzipped when the name ends in ``.gz``)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        else:
            data = path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"cannot read IDX file {str(path)!r} ({err}); the file is corrupt or truncated"
        ) from None
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise ValueError(
            f"IDX file {str(path)!r} has {len(data)} bytes, fewer than its {header}-byte header; "
            "the file is truncated"
        )
    words = np.frombuffer(data, dtype=">u4", count=1 + ndim).astype(np.int64)
    if int(words[0]) != magic:
        raise ValueError(
            f"IDX file {str(path)!r} starts with magic number {int(words[0])}, expected {magic} "
            f"(uint8 data with {ndim} dimension(s)); is it the right file?"
        )
    shape = tuple(int(w) for w in words[1:])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"IDX file {str(path)!r} declares shape {shape} ({expected} bytes of data) but holds "
            f"{len(data) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(n, 1, H, W)`` images to ``(n, 1, size, size)`` in one batched call.

    Shrinking uses area averaging (exact block means for an integer factor, anti-aliased
    otherwise); enlarging uses bilinear interpolation. Values stay in ``[0, 1]``.
    """
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-2] >= size and images.shape[-1] >= size:
        out = F.interpolate(images, size=(size, size), mode="area")
    else:
        out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (output images are size x size), got {size!r}")
    return int(size)


def _checked_directory(directory) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise ValueError(
            f"directory {str(directory)!r} does not exist; pass the folder holding the IDX files"
        )
    if not directory.is_dir():
        raise ValueError(
            f"{str(directory)!r} is not a directory; pass the folder holding the images and "
            "labels IDX files"
        )
    return directory


def load_idx(directory: str | os.PathLike) -> LabeledPool:
    """Load an MNIST-style pair of IDX files [2] from ``directory``.

    The directory must hold exactly one images file ``*images-idx3-ubyte`` and one labels file
    ``*labels-idx1-ubyte`` (either may be gzipped, ``.gz``; ``.idx3-ubyte`` with a dot is also
    recognised). The headers (magic 2051 / 2049, big-endian sizes) are checked against the data.

    :param directory: the folder, e.g. one holding ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz``.
    :returns: a pool of images ``(n, 1, rows, cols)`` float32 in ``[0, 1]`` (bytes / 255) and
        labels ``(n,)`` long.
    """
    directory = _checked_directory(directory)
    images_path = _find_one(directory, "images", 3)
    labels_path = _find_one(directory, "labels", 1)
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path.name} holds {images.shape[0]} images but {labels_path.name} holds "
            f"{labels.shape[0]} labels; use the images and labels files of the same split"
        )
    points = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    return LabeledPool(points, torch.from_numpy(labels.astype(np.int64)))


def load_image_npz(path: str | os.PathLike, size: int = 28, invert: bool | None = None) -> LabeledPool:
    """Load labelled images from an ``.npz`` archive and resize them to ``size x size``.

    :param path: an ``.npz`` file with arrays ``images``, ``(n, H, W)`` or ``(n, 1, H, W)``,
        either uint8 in ``0..255`` or floating-point in ``[0, 1]``, and ``labels`` ``(n,)``
        integer class ids ``>= 0`` (other arrays, e.g. ``class_names``, are ignored).
    :param int size: side of the output images; non-square images are stretched to a square.
    :param invert: ``True`` maps every value ``v`` to ``1 - v``; ``None`` (auto) inverts when
        the mean intensity is above 0.5, i.e. a white background with dark strokes such as
        Omniglot, so that strokes come out bright on a dark background like MNIST.
    :returns: a pool of images ``(n, 1, size, size)`` float32 in ``[0, 1]`` and labels
        ``(n,)`` long.
    """
    size = _check_size(size)
    if invert is not None and not isinstance(invert, bool):
        raise ValueError(f"invert must be True, False or None (auto), got {invert!r}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image archive {str(path)!r} does not exist or is not a file")
    arrays = _read_npz(path, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or 0 in images.shape:
        raise ValueError(
            f"'images' in {str(path)!r} has shape {images.shape}; expected a non-empty (n, H, W) "
            "or (n, 1, H, W) array of grey-scale images"
        )
    labels = _to_labels(labels, f"'labels' in {str(path)!r}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{str(path)!r} holds {images.shape[0]} images but {labels.shape[0]} labels; they "
            "must have the same length"
        )
    if images.dtype == np.uint8:
        points = torch.from_numpy(images.astype(np.float32)).div_(255.0)
    elif images.dtype.kind == "f":
        points = torch.from_numpy(images.astype(np.float32))
        if not bool(((points >= 0) & (points <= 1)).all()):  # also False for NaN
            raise ValueError(
                f"'images' in {str(path)!r} are floating-point with values outside [0, 1] (or "
                "NaN); scale them to [0, 1] or store uint8 0..255"
            )
    else:
        raise ValueError(
            f"'images' in {str(path)!r} have dtype {images.dtype}; expected uint8 (0..255) or "
            "floating-point in [0, 1]"
        )
    if invert is None:
        invert = bool(points.mean(dtype=torch.float64) > 0.5)
    if invert:
        points = torch.sub(1.0, points)
    return LabeledPool(_resize(points.unsqueeze(1), size), labels)


def load_images(path: str | os.PathLike, size: int = 28) -> LabeledPool:
    """Load an image pool from a directory of IDX files (:func:`load_idx`) or an ``.npz``
    archive (:func:`load_image_npz`, with automatic inversion), resized to ``size x size``.

    :returns: images ``(n, 1, size, size)`` float32 in ``[0, 1]`` and labels ``(n,)`` long.
    """
    size = _check_size(size)
    path = Path(path)
    if not path.exists():
        raise ValueError(
            f"image source {str(path)!r} does not exist; pass a directory of IDX files or an "
            ".npz file"
        )
    if path.is_dir():
        pool = load_idx(path)
        return LabeledPool(_resize(pool.points, size), pool.labels)
    if path.suffix == ".npz":
        return load_image_npz(path, size)
    raise ValueError(
        f"cannot load images from {str(path)!r}: pass a directory of IDX files (MNIST) or an "
        ".npz archive with 'images' and 'labels'"
    )
