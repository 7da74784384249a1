"""Image folders ``SPLIT/CLASS/IMAGE`` in a directory or a ``.zip`` (spec ``folder:PATH``).

Classes are the class folders of all splits sorted by name (so labels agree between train and
test); the images of a class are sorted by file name. A zip may wrap everything in one
top-level folder. Other top-level files and folders and hidden files (``.DS_Store``,
``__MACOSX/``) are ignored; anything else off the layout, an unreadable image, or an image
whose size or colour mode differs from the split's first one is a
:class:`~veilnet.errors.DataFormatError`. Decoding (Pillow) runs in worker processes when
there are many images (``$VEILNET_DATA_WORKERS`` sets how many; 1 decodes in-process).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veilnet import progress
from veilnet.data.images import decode_image
from veilnet.data.split import ImageSplit
from veilnet.errors import DataFormatError

SPLITS = ("train", "test")
#: Below this many images a split is decoded in this process.
_PARALLEL_MIN = 2000
_CHUNK = 1000
Expected = tuple[tuple[int, int], str, str]  # (width, height), "L"|"RGB", the first file
Blob = tuple[str, bytes]  # (where the file is, its bytes)


def _is_hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


class FolderSource:
    """``folder:PATH``: PATH is a directory holding ``train/`` and/or ``test/``, or a zip of one."""

    kind = "folder"

    def __init__(self, path: Path, *, origin: str = "") -> None:
        self.path = path
        self.label = f"folder-{path.name}"
        if path.is_dir():
            self.zip = False
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                raise DataFormatError(f"{path}: expected a directory or a .zip of SPLIT/CLASS/IMAGE files, got a file that is not a zip archive")
            self.zip = True
        else:
            where = f"; {origin}" if origin else ""
            hint = (
                "; the JPEG CIFAR-10 (cifar10-jpeg.zip): README, 'Data and checkpoints'; the original: `veilnet data info cifar10:PATH --download`"
                if "cifar" in path.name.lower()
                else ""
            )
            raise DataFormatError(f"{path} does not exist (expected a directory or a .zip of SPLIT/CLASS/IMAGE files{where}){hint}")
        self.prefix = ""
        self._files: dict[str, list[str]] | None = None  # split -> file names relative to PATH (posix)
        self._stats: dict[str, Any] = {}
        self.classes: list[str] = []

    def _list(self) -> dict[str, list[str]]:
        """The image files of every split; listed once, and for a zip only on a cache miss."""
        if self._files is None:
            files: dict[str, list[str]] = {}
            for name in self._zip_names() if self.zip else self._dir_names():
                parts = name.split("/")
                if parts[0] not in SPLITS:
                    continue
                if len(parts) != 3:
                    raise DataFormatError(f"{self._where(name)}: expected SPLIT/CLASS/IMAGE under {self.path}, got a file at depth {len(parts)}")
                files.setdefault(parts[0], []).append(name)
            self._files = files
            self.classes = sorted({name.split("/")[1] for names in files.values() for name in names})
        return self._files

    def _zip_names(self) -> list[str]:
        """Files in the zip, relative to its top-level folder when everything is in one."""
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/") and not _is_hidden(n)]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataFormatError(f"{self.path}: corrupt zip archive ({exc})") from exc
        tops = {n.split("/")[0] for n in names}
        if not tops & set(SPLITS) and len(tops) == 1 and all("/" in n for n in names):
            self.prefix = tops.pop() + "/"
        return [name[len(self.prefix) :] for name in names]

    def _dir_names(self) -> list[str]:
        """Files under PATH/SPLIT, recording their sizes and modification times."""
        names = []
        for split in SPLITS:
            stats = []
            for dirpath, dirnames, filenames in os.walk(self.path / split):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for fname in filenames:
                    full = Path(dirpath) / fname
                    name = full.relative_to(self.path).as_posix()
                    if not _is_hidden(name):
                        stat = full.stat()
                        stats.append([name, stat.st_size, stat.st_mtime_ns])
            self._stats[split] = sorted(stats)
            names += [name for name, _, _ in self._stats[split]]
        return names

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}

    def stats(self, split: str) -> Any:
        if self.zip:
            stat = self.path.stat()
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        self._list()
        return {"classes": self.classes, "files": self._stats[split]}

    def read(self, split: str, spec: str) -> ImageSplit:
        names = self._list().get(split)
        if not names:
            raise DataFormatError(f"{self.path} has no {split} images (expected {split}/CLASS/IMAGE files)")
        label_of = {name: i for i, name in enumerate(self.classes)}
        names = sorted(names, key=lambda n: (label_of[n.split("/")[1]], n.split("/")[2]))
        labels = torch.tensor([label_of[n.split("/")[1]] for n in names], dtype=torch.int64)
        blobs = self._blobs(names)
        first = next(blobs)
        pixels = _decode(first, None)
        expected: Expected = ((pixels.shape[1], pixels.shape[0]), "L" if pixels.shape[2] == 1 else "RGB", first[0])
        pixels = _decode_all(itertools.chain([first], blobs), len(names), expected, desc=f"decoding {self.path.name} ({split})")
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        return ImageSplit(images=images, labels=labels, classes=list(self.classes), spec=spec, split=split)

    def _where(self, name: str) -> str:
        return f"{self.path}:{self.prefix}{name}" if self.zip else str(self.path / name)

    def _blobs(self, names: list[str]) -> Iterator[Blob]:
        """The bytes of each file, read in this process (the zip is opened once)."""
        try:
            archive = zipfile.ZipFile(self.path) if self.zip else None
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataFormatError(f"{self.path}: corrupt zip archive ({exc})") from exc
        try:
            for name in names:
                try:
                    data = archive.read(self.prefix + name) if archive else (self.path / name).read_bytes()
                except (zipfile.BadZipFile, OSError, KeyError) as exc:
                    raise DataFormatError(f"{self._where(name)}: cannot read ({exc})") from exc
                yield self._where(name), data
        finally:
            if archive:
                archive.close()


def _decode(blob: Blob, expected: Expected | None) -> np.ndarray:
    """One image as ``H×W×C`` uint8, C = 1 (grayscale) or 3 (RGB); with ``expected``, an image
    of another size or colour kind than the split's first one is a DataFormatError."""
    where, data = blob
    pixels = decode_image(data, where)
    if expected is not None:
        (w, h), want, first = expected
        mode = "L" if pixels.shape[2] == 1 else "RGB"
        if (pixels.shape[1], pixels.shape[0], mode) != (w, h, want):
            raise DataFormatError(f"{where}: image is {pixels.shape[1]}×{pixels.shape[0]} {mode}, expected {w}×{h} {want} like {first}")
    return pixels


def _decode_chunk(blobs: list[Blob], expected: Expected) -> np.ndarray:
    (w, h), mode, _ = expected
    out = np.empty((len(blobs), h, w, 1 if mode == "L" else 3), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        out[i] = _decode(blob, expected)
    return out


def _workers(n: int) -> int:
    """Worker processes for ``n`` images: ``$VEILNET_DATA_WORKERS`` if set, else one per core
    (at most 8); none below :data:`_PARALLEL_MIN` images or where ``fork`` is unavailable."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    setting = os.environ.get("VEILNET_DATA_WORKERS", "")
    wanted = int(setting) if setting.isdigit() else min(cores, 8)
    if n < _PARALLEL_MIN or wanted < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return wanted


def _decode_all(blobs: Iterable[Blob], n: int, expected: Expected, *, desc: str) -> np.ndarray:
    """Decode ``n`` images in chunks: here, or in worker processes that get each chunk's bytes
    as soon as it is read (so reading overlaps decoding)."""
    chunks = iter(lambda: list(itertools.islice(blobs, _CHUNK)), [])
    workers = _workers(n)
    parts = []
    with progress.bar(desc=desc, total=n, unit="img") as bar:
        if workers == 1:
            for chunk in chunks:
                parts.append(_decode_chunk(chunk, expected))
                bar.update(len(chunk))
            return np.concatenate(parts)
        # fork: the workers need only numpy and Pillow, already imported here.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            futures = [pool.submit(_decode_chunk, chunk, expected) for chunk in chunks]
            for future in futures:
                parts.append(future.result())
                bar.update(len(parts[-1]))
        finally:
            pool.shutdown(cancel_futures=True)
    return np.concatenate(parts)
