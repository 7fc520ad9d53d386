"""Embedding pools from files: precomputed feature vectors with class ids.

Clustering image embeddings (e.g. features of a pretrained network) instead of raw pixels uses
the MLP encoder of the energy network (Eqs. 12-15 in [1]) on ``(n, d)`` points. Features are
stored in one of four formats, chosen by the file's suffix:

- ``.npz``: arrays ``features`` ``(n, d)`` and ``labels`` ``(n,)``;
- ``.pt``: a dict ``{"features": Tensor, "labels": Tensor}`` (read with
  ``torch.load(weights_only=True)``, so no code in the file runs);
- ``.safetensors``: tensors ``features`` and ``labels`` (needs the optional ``safetensors``
  package);
- ``.npy``: the features alone, with the labels in a second ``.npy`` file.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .pools import LabeledPool, _read_npz, _to_labels

__all__ = ["load_embeddings", "save_embeddings"]

_SUFFIXES = (".npz", ".pt", ".safetensors", ".npy")


def _safetensors_torch():
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError(
            "reading or writing .safetensors files needs the optional package safetensors: "
            "pip install safetensors (or use .npz / .pt)"
        ) from None
    return safetensors.torch


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be a numeric array, got dtype {value.dtype}")
        return torch.from_numpy(np.array(value))  # writable copy
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise ValueError(f"{name} must be an array or tensor, got {type(value).__name__}")


def _make_pool(features, labels, source: str) -> LabeledPool:
    """Validate ``features`` ``(n, d)`` and ``labels`` ``(n,)``; features become float32."""
    features = _as_tensor(features, f"features in {source}")
    if features.dtype == torch.bool or features.is_complex():
        raise ValueError(f"features in {source} must be real numbers, got dtype {features.dtype}")
    if features.ndim != 2:
        raise ValueError(
            f"features in {source} have shape {tuple(features.shape)}; expected a 2-D (n, d) "
            "array, one embedding per row (flatten other shapes first)"
        )
    features = features.to(torch.float32)
    if not bool(torch.isfinite(features).all()):
        raise ValueError(
            f"features in {source} hold NaN or inf values (or values too large for float32); "
            "clean the embeddings first"
        )
    labels = _to_labels(_as_tensor(labels, f"labels in {source}"), f"labels in {source}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"features in {source} have {features.shape[0]} rows but labels have "
            f"{labels.shape[0]} entries; they must have the same length"
        )
    if features.shape[0] == 0:
        raise ValueError(f"{source} holds no embeddings (n = 0)")
    return LabeledPool(features, labels)


def _check_suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    if path.suffix not in allowed:
        raise ValueError(
            f"{what} {str(path)!r} has suffix {path.suffix!r}; supported: {', '.join(allowed)}"
        )
    return path.suffix


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {str(path)!r} as a .npy array ({err})") from None


def load_embeddings(path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> LabeledPool:
    """Load an embedding pool (format from the suffix, see the module docstring).

    :param path: a ``.npz``, ``.pt``, ``.safetensors`` or ``.npy`` file of features ``(n, d)``.
    :param labels_path: with ``.npy`` features only (and then required): a ``.npy`` file of the
        ``(n,)`` class ids.
    :returns: a pool of points ``(n, d)`` float32 and labels ``(n,)`` long (ids ``>= 0``).
    :raises ValueError: unknown suffix, missing arrays, features not 2-D or not finite, labels
        negative or not whole numbers, or different lengths.
    :raises ImportError: for ``.safetensors`` when the ``safetensors`` package is missing.
    """
    path = Path(path)
    suffix = _check_suffix(path, _SUFFIXES, "embedding file")
    if not path.is_file():
        raise ValueError(f"embedding file {str(path)!r} does not exist or is not a file")
    if (labels_path is None) != (suffix != ".npy"):
        raise ValueError(
            "labels_path is required with .npy features (the labels live in a second .npy file) "
            f"and only then; got path {str(path)!r} and labels_path {labels_path!r}"
        )
    source = repr(str(path))
    if suffix == ".npy":
        labels_path = Path(labels_path)
        _check_suffix(labels_path, (".npy",), "labels_path")
        if not labels_path.is_file():
            raise ValueError(f"labels_path {str(labels_path)!r} does not exist or is not a file")
        return _make_pool(_load_npy(path), _load_npy(labels_path), source)
    if suffix == ".npz":
        contents = _read_npz(path, ("features", "labels"))
    elif suffix == ".pt":
        try:
            contents = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for unreadable files
            raise ValueError(f"cannot read {source} with torch.load(weights_only=True) ({err})") from None
        if not isinstance(contents, dict):
            raise ValueError(
                f"{source} holds a {type(contents).__name__}; expected a dict "
                "{'features': Tensor (n, d), 'labels': Tensor (n,)}"
            )
    else:
        reader = _safetensors_torch()
        try:
            contents = reader.load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError
            raise ValueError(f"cannot read {source} as a .safetensors file ({err})") from None
    missing = [key for key in ("features", "labels") if key not in contents]
    if missing:
        raise ValueError(
            f"{source} lacks {missing}; expected 'features' (n, d) and 'labels' (n,), found "
            f"{list(contents)}"
        )
    return _make_pool(contents["features"], contents["labels"], source)


def save_embeddings(path: str | os.PathLike, features, labels) -> Path:
    """Write an embedding pool atomically, so that :func:`load_embeddings` reads it back exactly.

    The data go to a temporary file in the target's directory, which then replaces ``path``
    (``os.replace``): readers never see a half-written file. Features are stored as float32 and
    labels as int64, the dtypes :func:`load_embeddings` returns.

    :param path: the target, ``.npz``, ``.pt`` or ``.safetensors`` (the latter needs the
        ``safetensors`` package); its directory must exist.
    :param features: ``(n, d)`` array or tensor, finite.
    :param labels: ``(n,)`` integer class ids ``>= 0``.
    :returns: ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    suffix = _check_suffix(path, (".npz", ".pt", ".safetensors"), "embedding file")
    if not path.parent.is_dir():
        raise ValueError(f"directory {str(path.parent)!r} of {str(path)!r} does not exist; create it first")
    pool = _make_pool(features, labels, "save_embeddings")
    tensors = {"features": pool.points.contiguous(), "labels": pool.labels.contiguous()}
    payload = _safetensors_torch().save(tensors) if suffix == ".safetensors" else None
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            if suffix == ".npz":
                np.savez(stream, **{key: value.numpy() for key, value in tensors.items()})
            elif suffix == ".pt":
                torch.save(tensors, stream)
            else:
                stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
