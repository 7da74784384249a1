"""CIFAR-10 and CIFAR-100 in their official Python pickle format (Krizhevsky, 2009).

Specs ``cifar10:PATH`` and ``cifar100:PATH``. PATH is the folder ``cifar-10-batches-py``
(``cifar-100-python``), a folder that contains it or the official ``.tar.gz``, or the archive
itself; members are read straight from the archive. Only the expected member names are
unpickled, with an unpickler that can build nothing but dicts, lists, bytes, strings, numbers
and numpy arrays. ``download=True`` fetches the official archive into PATH (URL base from
``$VEILNET_CIFAR_URL``), checks its MD5, and only then moves it into place.

CIFAR-100's fine labels are :attr:`ImageSplit.labels`; its 20 superclasses are
:attr:`ImageSplit.coarse_labels` / :attr:`ImageSplit.coarse_classes`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veilnet import progress
from veilnet.data.split import ImageSplit
from veilnet.errors import DataFormatError

#: Where the official archives live; ``$VEILNET_CIFAR_URL`` overrides it (a mirror, a test server).
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class Layout:
    """The official archive and pickle layout of one CIFAR data set."""

    archive: str
    md5: str
    folder: str
    members: dict[str, tuple[str, ...]]  # split -> pickle files
    meta: str
    label_key: bytes
    names_key: bytes
    coarse_label_key: bytes | None = None
    coarse_names_key: bytes | None = None


LAYOUTS = {
    "cifar10": Layout(
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        members={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
    ),
    "cifar100": Layout(
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        members={"train": ("train",), "test": ("test",)},
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        coarse_label_key=b"coarse_labels",
        coarse_names_key=b"coarse_label_names",
    ),
}

# The one callable that pickled numpy arrays reference, whatever numpy wrote the file.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds only builtin containers/scalars and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unpickle(data: bytes, where: str) -> dict[bytes, Any]:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can raise nearly anything; none of it is a bug here
        raise DataFormatError(f"{where}: not a CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _field(batch: dict[bytes, Any], key: bytes, where: str) -> Any:
    if key not in batch:
        raise DataFormatError(f"{where}: missing the {key.decode()!r} entry (has {sorted(k.decode(errors='replace') for k in batch if isinstance(k, bytes))})")
    return batch[key]


def _labels(batch: dict[bytes, Any], key: bytes, n: int, num_classes: int, where: str) -> np.ndarray:
    try:
        labels = np.asarray(_field(batch, key, where), dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{where}: {key.decode()!r} is not a list of integers") from exc
    if labels.shape != (n,) or (n and not 0 <= labels.min() <= labels.max() < num_classes):
        raise DataFormatError(f"{where}: expected {n} {key.decode()!r} in [0, {num_classes}), got shape {labels.shape}")
    return labels


def _names(meta: dict[bytes, Any], key: bytes, where: str) -> list[str]:
    names = _field(meta, key, where)
    if not isinstance(names, list) or not all(isinstance(x, bytes) for x in names):
        raise DataFormatError(f"{where}: {key.decode()!r} is not a list of names")
    return [x.decode() for x in names]


def download(name: str, root: Path | str, *, url: str | None = None) -> Path:
    """Fetch the official archive of ``name`` (``cifar10``/``cifar100``) into ``root``.

    The file is written under a temporary name and renamed only once its MD5 matches; a
    mismatch raises :class:`DataFormatError` and leaves nothing behind. An archive already
    in ``root`` is kept. ``url`` defaults to ``$VEILNET_CIFAR_URL`` or :data:`CIFAR_URL`,
    followed by the archive's name.
    """
    layout = LAYOUTS[name]
    root = Path(root)
    target = root / layout.archive
    if target.is_file():
        return target
    url = url or os.environ.get("VEILNET_CIFAR_URL", CIFAR_URL).rstrip("/") + "/" + layout.archive
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{layout.archive}.", suffix=".part", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress.bar(desc=f"downloading {layout.archive}", total=total, unit="B", unit_scale=True) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if digest.hexdigest() != layout.md5:
            raise DataFormatError(f"download of {url}: MD5 {digest.hexdigest()}, expected {layout.md5}; nothing was saved")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as exc:
        raise DataFormatError(f"could not download {url} into {root}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


class CifarSource:
    """``cifar10:PATH`` / ``cifar100:PATH``, resolved to the pickle folder or the archive."""

    def __init__(self, kind: str, path: Path, *, fetch: bool = False, origin: str = "") -> None:
        self.kind = kind
        self.layout = layout = LAYOUTS[kind]
        if path.is_dir() and (path.name == layout.folder or (path / layout.meta).is_file()):
            self.path = path
        elif path.is_dir() and (path / layout.folder).is_dir():
            self.path = path / layout.folder
        elif path.is_dir() and (path / layout.archive).is_file():
            self.path = path / layout.archive
        elif path.is_file():
            self.path = path
        elif fetch:
            self.path = download(kind, path.parent if path.name == layout.archive else path)
        else:
            problem = "holds neither" if path.is_dir() else "does not exist; expected"
            where = f" ({origin})" if origin else ""
            raise DataFormatError(
                f"{path} {problem} {layout.folder}/ {'nor' if path.is_dir() else 'or'} {layout.archive}{where}; "
                f"fetch it with `veilnet data info {kind}:PATH --download` (MD5-checked; also --download on `veilnet train`, download=True in Python)"
            )
        self.archive = self.path.is_file()
        self.label = f"{kind}-{self.path.name}"

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}

    def _files(self, split: str) -> list[str]:
        return [*self.layout.members[split], self.layout.meta]

    def stats(self, split: str) -> Any:
        paths = [self.path] if self.archive else [self.path / name for name in self._files(split)]
        return [[p.name, s.st_size, s.st_mtime_ns] for p in paths if p.exists() for s in [p.stat()]]

    def _members(self, split: str) -> Iterator[tuple[str, str, bytes]]:
        """``(name, where, bytes)`` of the split's pickles and the meta file, in any order."""
        wanted = self._files(split)
        if not self.archive:
            for name in wanted:
                path = self.path / name
                if not path.is_file():
                    raise DataFormatError(f"{path} is missing (expected the {self.layout.folder} files {', '.join(wanted)})")
                yield name, str(path), path.read_bytes()
            return
        members = {f"{self.layout.folder}/{name}": name for name in wanted}
        found = set()
        try:
            with tarfile.open(self.path, "r|gz") as tar:
                for member in tar:
                    name = members.get(member.name)
                    if name is None or name in found:
                        continue
                    fh = tar.extractfile(member) if member.isfile() else None
                    if fh is None:
                        raise DataFormatError(f"{self.path}:{member.name}: expected a regular file")
                    found.add(name)
                    yield name, f"{self.path}:{member.name}", fh.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{self.path}: corrupt or unreadable .tar.gz ({exc})") from exc
        missing = [m for m, name in members.items() if name not in found]
        if missing:
            raise DataFormatError(f"{self.path}: the archive lacks {', '.join(missing)} (expected the official {self.layout.archive} layout)")

    def read(self, split: str, spec: str) -> ImageSplit:
        layout = self.layout
        batches, where = {}, {}
        for name, at, data in self._members(split):
            batches[name], where[name] = _unpickle(data, at), at
        meta = batches.pop(layout.meta)
        classes = _names(meta, layout.names_key, where[layout.meta])
        coarse_classes = None if layout.coarse_names_key is None else _names(meta, layout.coarse_names_key, where[layout.meta])
        images, labels, coarse = [], [], []
        for name in layout.members[split]:
            batch, at = batches[name], where[name]
            data = _field(batch, b"data", at)
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                shape = getattr(data, "shape", type(data).__name__)
                raise DataFormatError(f"{at}: expected 'data' as a uint8 array of shape N×3072, got {getattr(data, 'dtype', '')} {shape}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(_labels(batch, layout.label_key, len(data), len(classes), at))
            if layout.coarse_label_key is not None and coarse_classes is not None:
                coarse.append(_labels(batch, layout.coarse_label_key, len(data), len(coarse_classes), at))
        return ImageSplit(
            images=torch.from_numpy(np.concatenate(images)),
            labels=torch.from_numpy(np.concatenate(labels)),
            classes=classes,
            spec=spec,
            split=split,
            coarse_labels=torch.from_numpy(np.concatenate(coarse)) if coarse else None,
            coarse_classes=coarse_classes,
        )


__all__ = ["download"]
