"""Data set specs (``digits``, ``folder:PATH``, ``cifar10:PATH``, ``cifar100:PATH``) and :func:`load`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from veilnet.data.cache import cached
from veilnet.data.cifar import LAYOUTS, CifarSource
from veilnet.data.digits import DigitsSource
from veilnet.data.folder import SPLITS, FolderSource
from veilnet.data.split import ImageSplit
from veilnet.errors import DataFormatError

SPECS = ("digits", "folder:PATH", "cifar10:PATH", "cifar100:PATH")


class Source(Protocol):
    kind: str
    label: str

    def identity(self) -> dict[str, Any]: ...

    def stats(self, split: str) -> Any: ...

    def read(self, split: str, spec: str) -> ImageSplit: ...


def resolve_path(path: str) -> Path:
    """``~`` expanded; a relative path is taken under ``$VEILNET_DATA`` when it is set."""
    p = Path(path).expanduser()
    root = os.environ.get("VEILNET_DATA")
    if not p.is_absolute() and root:
        p = Path(root).expanduser() / p
    return p.resolve()


def origin(path: str) -> str:
    """Where a data spec's PATH was looked for, for an error that says the data is missing:
    under ``$VEILNET_DATA``, in the working folder (the variable unset), or an absolute path."""
    root = os.environ.get("VEILNET_DATA")
    if Path(path).expanduser().is_absolute():
        return "an absolute path; VEILNET_DATA applies only to relative ones"
    if root:
        return f"relative paths are read under VEILNET_DATA={root}"
    return f"VEILNET_DATA is unset, so relative paths are read from the working folder {Path.cwd()}"


def source(spec: str, *, download: bool = False) -> Source:
    """The data source a spec names (checks that it exists; downloads CIFAR if asked)."""
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits":
        return DigitsSource(arg)
    if kind in LAYOUTS:
        if not arg and not os.environ.get("VEILNET_DATA"):
            raise DataFormatError(
                f"{spec!r}: expected {kind}:PATH (or set VEILNET_DATA to the folder holding it); `veilnet data info {kind}:PATH --download` fetches it"
            )
        where = origin(arg) if arg else f"a bare {kind} means VEILNET_DATA={os.environ['VEILNET_DATA']} itself"
        return CifarSource(kind, resolve_path(arg or "."), fetch=download, origin=where)
    if kind == "folder":
        if not arg:
            raise DataFormatError(f"{spec!r}: expected folder:PATH with PATH a directory or a .zip")
        return FolderSource(resolve_path(arg), origin=origin(arg))
    raise DataFormatError(f"unknown data set {spec!r}; expected one of {', '.join(SPECS)}")


def load(spec: str, split: str = "train", *, download: bool = False) -> ImageSplit:
    """Load one split (``"train"`` or ``"test"``) of the data set named by ``spec``.

    Decoded images are cached (see :mod:`veilnet.data.cache`), so only the first load of a
    source decodes it. ``download=True`` fetches a missing CIFAR archive.

    Example:
        >>> test = load("digits", "test")
        >>> test.images.shape, test.num_classes
        (torch.Size([359, 3, 32, 32]), 10)
    """
    if split not in SPLITS:
        raise DataFormatError(f"unknown split {split!r} for {spec!r}; expected one of {', '.join(SPLITS)}")
    src = source(spec, download=download)
    return cached(src.label, split, spec, src.identity(), src.stats(split), lambda: src.read(split, spec))


__all__ = ["SPECS", "load", "source"]
