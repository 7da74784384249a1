"""Output paths: one check before anything is written.

Every command that writes files calls :func:`prepare_output` first, so a user's mistake (an
existing result without ``--force``, a path under a regular file, a folder that cannot be
written) is one :class:`~veilnet.errors.VeilnetError` before any work is done and nothing that
exists is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from veilnet.errors import ConfigError, OutputExistsError


def prepare_output(path: str | os.PathLike[str], *, force: bool = False, exists: Iterable[str | os.PathLike[str]] = (), mkdir: bool = False) -> Path:
    """Check that ``path`` can be written and return it as a :class:`Path`.

    ``exists`` names the files (relative to ``path`` when ``path`` is a folder the command
    fills, or absolute) whose presence means a previous result would be overwritten; without
    it, ``path`` itself is that file. Raises :class:`OutputExistsError` when one exists and not
    ``force``, :class:`ConfigError` when a parent of ``path`` is a regular file or the nearest
    existing folder is not writable. ``mkdir`` creates ``path`` as a folder.
    """
    path = Path(path)
    targets = [path / p for p in exists] if exists else [path]
    if not force:
        for target in targets:
            if target.exists():
                raise OutputExistsError(f"{target} exists; pass --force to overwrite")
    parent = path if mkdir else path.parent
    probe = parent
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
