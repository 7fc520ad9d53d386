"""One JSON round trip for the package's frozen configuration dataclasses.

``to_dict`` gives plain JSON-safe values (nested dataclasses become dicts, tuples lists);
``from_dict`` refuses unknown keys with a message that names them and the known ones, turns lists
back into tuples, and builds nested configuration dataclasses through their own ``from_dict``
(their ``__post_init__`` also accepts dicts). ``check_literals`` checks every ``Literal``-typed field
against the values its type allows (``typing.get_args``), so no allowed value is written twice.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Literal

__all__ = ["JsonDataclass"]


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def literal_fields(cls: type) -> dict[str, tuple]:
    """``{field: allowed values}`` for every ``Literal``-typed field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


class JsonDataclass:
    """Mixin for ``@dataclass(frozen=True)`` configurations: ``to_dict`` / ``from_dict``."""

    def check_literals(self) -> None:
        """``ValueError`` naming the field and its allowed values unless every ``Literal`` field
        holds one of them (call it from ``__post_init__``)."""
        for name, allowed in literal_fields(type(self)).items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """JSON-safe dict of every field (nested dataclasses as dicts, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict):
        """Inverse of :meth:`to_dict`; ``ValueError`` on keys that are not fields."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields (unknown keys) {unknown}; expected some of {sorted(names)}")
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in data.items()})
