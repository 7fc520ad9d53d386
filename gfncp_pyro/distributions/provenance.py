"""Pyro's provenance tracking, unwrapped and put back in one place.

``TraceGraph_ELBO`` wraps sampled values in ``pyro.ops.provenance.ProvenanceTensor`` to record
which sites a value depends on. Computations that index with such values, or differentiate
through them, run on the plain tensor; the result is then wrapped again so that the graph
still records the dependence. :func:`with_provenance_of` does both around one function.
"""

from __future__ import annotations

from typing import Callable

from pyro.ops.provenance import detach_provenance, get_provenance, track_provenance

__all__ = ["plain", "with_provenance_of"]


def with_provenance_of(value, compute: Callable):
    """``compute(plain value)`` with the provenance of ``value`` put back on every tensor of
    the result (a tensor or a tuple of tensors)."""
    provenance = get_provenance(value)
    result = compute(detach_provenance(value))
    if not provenance:
        return result
    if isinstance(result, tuple):
        return tuple(track_provenance(r, provenance) for r in result)
    return track_provenance(result, provenance)


def plain(value):
    """``value`` without Pyro's provenance wrapper (itself when it has none)."""
    return detach_provenance(value)
