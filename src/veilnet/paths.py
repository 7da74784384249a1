"""Output paths: one check before anything is written, and one way to write.

Every command that writes files calls :func:`prepare_output` first, so a user's mistake (an
existing result without ``--force``, a path under a regular file, a device or folder where a
file goes, a folder that cannot be written) is one :class:`~veilnet.errors.VeilnetError`
before any work is done and nothing that exists is lost.

Every file is then written through :func:`atomic_write` (or its wrappers :func:`write_bytes`
and :func:`write_text`): into a temporary file beside it, synced, then renamed over it, so a
full disk or an interrupted write leaves the old file (or none) and never half a new one.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from veilnet.errors import ConfigError, OutputExistsError, OutputWriteError


def _not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``"a folder"``, ``"a device"``, ...), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def prepare_output(path: str | os.PathLike[str], *, force: bool = False, exists: Iterable[str] = (), mkdir: bool = False) -> Path:
    """Check that ``path`` can be written and return it as a :class:`Path`.

    Without ``exists``, ``path`` is the file to write. With it, ``path`` is a folder the command
    fills and ``exists`` names the files in it whose presence means a previous result would be
    overwritten. Raises :class:`OutputExistsError` when such a file exists and not ``force``;
    :class:`ConfigError` when one exists and is not a regular file (``--force`` replaces regular
    files only: never a device, FIFO, socket or folder), when ``path`` or a parent of it is a
    regular file where a folder is needed, or when the nearest existing folder is not writable.
    ``mkdir`` creates the folder ``path``.
    """
    path = Path(path)
    folder = bool(exists) or mkdir
    targets = [path / name for name in exists] if exists else ([] if folder else [path])
    for target in targets:
        what = _not_regular(target)
        if what is not None:
            raise ConfigError(f"cannot write {target}: it is {what}, not a regular file")
        if not force and target.exists():
            raise OutputExistsError(f"{target} exists; pass --force to overwrite")
    probe = path if folder else path.parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"cannot write {path}: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: folder {probe} is not writable")
    if mkdir:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create folder {path}: {exc.strerror or exc}") from None
    return path


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, perm: int = 0o666, replace: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing (``mode`` ``"w"`` or ``"wb"``) and put it in place on success.

    The guarantees: the folder is created if missing; the temporary file (created with ``perm``,
    less the umask) is synced to disk and then renamed onto ``path`` in one step, so a reader sees
    the old file or the whole new one, never part of one; on any exception inside the block or
    while writing, the temporary file is removed and an existing ``path`` is untouched. With
    ``replace=False`` an existing ``path`` is never overwritten, even one created meanwhile
    (:class:`OutputExistsError`). An ``OSError`` (disk full, file-size limit, permission) becomes
    one :class:`OutputWriteError` naming ``path`` and the reason.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, perm), mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise OutputExistsError(f"{path} exists; pass --force to overwrite") from None
        except OutputExistsError:
            raise
        except OSError as exc:
            raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, **options: Any) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write` (``options`` as there); returns the path."""
    with atomic_write(path, "wb", **options) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, **options: Any) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write` (``options`` as there); returns the path."""
    with atomic_write(path, "w", **options) as fh:
        fh.write(text)
    return Path(path)
