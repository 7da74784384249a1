"""The decoded-image cache: uint8 ``.npy`` arrays under ``$XDG_CACHE_HOME/veilnet/data``.

An entry is a folder ``<source>-<split>-<id>-<key>`` holding ``images.npy``, ``labels.npy``
(and ``coarse_labels.npy`` for CIFAR-100) and ``meta.json``. ``id`` hashes what the data set
is (kind, absolute path, options, split); ``key`` hashes that plus the size and modification
time of the source files, so a changed source misses the cache, is decoded again, and its
stale entry is removed. Each file of an entry is written atomically
(:func:`veilnet.paths.write_bytes`) and ``meta.json`` last, so a reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veilnet.data.split import ImageSplit
from veilnet.errors import OutputWriteError
from veilnet.paths import write_bytes, write_text

#: Bump when the layout of an entry or the decoding of any source changes.
VERSION = 1
_ARRAYS = ("images", "labels", "coarse_labels")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/veilnet`` (default ``~/.cache/veilnet``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "veilnet"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def entry_prefix(label: str, split: str, identity: dict[str, Any]) -> str:
    """The name every entry of this data set and split starts with, whatever its source stats."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)[:48]
    return f"{safe}-{split}-{_digest({'version': VERSION, 'split': split, **identity})}-"


def _read(entry: Path, key: dict[str, Any], spec: str, split: str) -> ImageSplit | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        arrays = {name: torch.from_numpy(np.load(entry / f"{name}.npy", allow_pickle=False)) for name in _ARRAYS if (entry / f"{name}.npy").exists()}
        return ImageSplit(classes=meta["classes"], coarse_classes=meta["coarse_classes"], spec=spec, split=split, **arrays)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(entry: Path, key: dict[str, Any], data: ImageSplit) -> None:
    """The arrays, then ``meta.json``: an entry whose meta can be read is whole (another process
    writing the same entry writes the same files)."""
    for name in _ARRAYS:
        value = getattr(data, name)
        if value is not None:
            buffer = io.BytesIO()  # numpy writing a real file loses the reason of a failed write
            np.save(buffer, value.numpy())
            write_bytes(entry / f"{name}.npy", buffer.getvalue())
    write_text(entry / "meta.json", json.dumps({"key": key, "classes": data.classes, "coarse_classes": data.coarse_classes}))


def cached(label: str, split: str, spec: str, identity: dict[str, Any], stats: Any, decode: Callable[[], ImageSplit]) -> ImageSplit:
    """The split from the cache when its source is unchanged, otherwise ``decode()`` it and store it.

    ``identity`` says which data set this is, ``stats`` the state of its source files (sizes,
    modification times); both must be JSON-serialisable.
    """
    prefix = entry_prefix(label, split, identity)
    key = {"version": VERSION, "split": split, "identity": identity, "stats": stats}
    root = cache_dir() / "data"
    entry = root / (prefix + _digest(key))
    if entry.is_dir() and (hit := _read(entry, key, spec, split)) is not None:
        return hit
    data = decode()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write(entry, key, data)
        for stale in root.glob(prefix + "*"):
            if stale != entry:
                shutil.rmtree(stale, ignore_errors=True)
    except (OSError, OutputWriteError) as exc:
        warnings.warn(f"could not cache {spec} ({split}) under {root}: {exc}", stacklevel=3)
    return data


__all__ = ["cache_dir"]
