"""Output files of the commands: checked before any work starts, written atomically.

:func:`check_output_file` and :func:`check_output_dir` turn every way an output path can be
wrong (a directory where a file is wanted or the reverse, a missing parent, a location that
cannot be written) into one :class:`OutputPathError` naming the flag, so a command fails in its
first second instead of after an hour of work. :func:`write_atomic` writes through a temporary
file in the target's directory and :func:`os.replace`, so a reader (or an interrupted command)
never sees a half-written report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["OutputPathError", "check_output_file", "check_output_dir", "write_atomic", "write_atomic_with"]


class OutputPathError(ValueError):
    """An output path that cannot be written."""


def _probe(directory: Path, flag: str) -> None:
    """Create and delete a temporary file in ``directory``: the only check that also holds for
    root, read-only file systems and network mounts."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".gfncp-probe.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise OutputPathError(f"{flag}: cannot write in directory {directory} ({err.strerror or err}); "
                              "choose a writable location") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike, flag: str, suffix: str | None = None) -> Path:
    """Check that ``path`` can be written as a file (nothing is created).

    :param flag: the option's name for the message, e.g. ``"--json"``.
    :param suffix: required suffix (e.g. ``".png"``), compared case-insensitively.
    :raises OutputPathError: ``path`` is a directory, its parent does not exist or is not a
        directory, it cannot be written, or it lacks ``suffix``.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputPathError(f"{flag}: give a file name, got {str(path)!r}")
    if suffix is not None and path.suffix.lower() != suffix:
        raise OutputPathError(f"{flag}: the file name must end in {suffix}, got {str(path)!r}")
    if path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a directory; give a file name inside it")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"{flag}: directory {parent} of {path} does not exist; create it first")
    if not parent.is_dir():
        raise OutputPathError(f"{flag}: {parent} (the parent of {path}) is a file, not a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag}: {path} exists and is not writable")
    _probe(parent, flag)
    return path


def check_output_dir(path: str | os.PathLike, flag: str, create: bool = True) -> Path:
    """Check that ``path`` is (or, with ``create``, can become) a writable directory; with
    ``create`` it and its missing parents are made.

    :raises OutputPathError: ``path`` or one of its ancestors is a file, or it cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag}: {path} is a file, not a directory")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputPathError(f"{flag}: {ancestor} (in {path}) is a file, not a directory")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(f"{flag}: cannot create directory {path} ({err.strerror or err})") from None
    if path.is_dir():
        _probe(path, flag)
    return path


def write_atomic_with(path: str | os.PathLike, write: Callable[[object], None], mode: str = "w") -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, flush it to disk and rename
    it over ``path``; on any error (or interruption) the temporary file is removed and ``path``
    is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically (see :func:`write_atomic_with`)."""
    return write_atomic_with(path, lambda handle: handle.write(data), "wb" if isinstance(data, bytes) else "w")
