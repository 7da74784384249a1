"""CIFAR-10/100 in the official pickle layout: folders, .tar.gz, the safe unpickler, download."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from veilnet.data import cifar, load
from veilnet.errors import DataFormatError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles as Python 2 did for the official files: ``str`` as byte strings
    (BINSTRING) and numpy's ``numpy.core.multiarray._reconstruct``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        head = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else pickle.BINSTRING + struct.pack("<i", len(obj))
        self.write(head + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("ascii"))

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _py2_pickle(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _cifar_files(name: str, per_batch: int = 6, seed: int = 0) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Tiny pickles in the official layout: {member: bytes}, and the expected arrays per split."""
    layout = cifar.LAYOUTS[name]
    rng = np.random.default_rng(seed)
    n_fine = 10 if name == "cifar10" else 100
    files, expected = {}, {}
    for split, members in layout.members.items():
        data, labels, coarse = [], [], []
        for member in members:
            batch = {b"batch_label": member.encode(), b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * per_batch}
            batch[layout.label_key] = rng.integers(0, n_fine, per_batch).tolist()
            data.append(batch[b"data"])
            labels += batch[layout.label_key]
            if layout.coarse_label_key:
                batch[layout.coarse_label_key] = rng.integers(0, 20, per_batch).tolist()
                coarse += batch[layout.coarse_label_key]
            files[member] = _py2_pickle(batch)
        expected[split] = np.concatenate(data).reshape(-1, 3, 32, 32)
        expected[split + "_labels"] = np.array(labels)
        expected[split + "_coarse"] = np.array(coarse)
    meta = {layout.names_key: [f"class{i:02d}".encode() for i in range(n_fine)], b"num_cases_per_batch": per_batch}
    if layout.coarse_names_key:
        meta[layout.coarse_names_key] = [f"super{i:02d}".encode() for i in range(20)]
    files[layout.meta] = _py2_pickle(meta)
    return files, expected


def _write_dir(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / cifar.LAYOUTS[name].folder
    folder.mkdir(parents=True)
    for member, data in files.items():
        (folder / member).write_bytes(data)
    return folder


def _write_tar(path: Path, name: str, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(f"{cifar.LAYOUTS[name].folder}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_every_way_of_pointing_at_cifar_gives_the_same_pixels(tmp_path: Path, name: str) -> None:
    files, expected = _cifar_files(name)
    folder = _write_dir(tmp_path / "dir", name, files)
    archive = _write_tar(tmp_path / "arc" / cifar.LAYOUTS[name].archive, name, files)
    for spec in (f"{name}:{tmp_path / 'dir'}", f"{name}:{folder}", f"{name}:{archive}", f"{name}:{archive.parent}"):
        for split in ("train", "test"):
            data = load(spec, split)
            assert torch.equal(data.images, torch.from_numpy(expected[split])), spec
            assert data.labels.tolist() == expected[split + "_labels"].tolist()
            assert data.spec == spec and data.split == split
            if name == "cifar10":
                assert data.classes[3] == "class03" and data.coarse_labels is None
            else:
                assert data.num_classes == 100 and data.coarse_classes is not None and len(data.coarse_classes) == 20
                assert data.coarse_labels is not None and data.coarse_labels.tolist() == expected[split + "_coarse"].tolist()
                assert data.select([1, 0]).coarse_labels.tolist() == expected[split + "_coarse"][[1, 0]].tolist()  # type: ignore[union-attr]
    assert len(load(f"{name}:{archive}", "train")) == 6 * len(cifar.LAYOUTS[name].members["train"])


def test_relative_path_is_taken_under_veilnet_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, expected = _cifar_files("cifar10", per_batch=2)
    _write_dir(tmp_path / "cifar", "cifar10", files)
    monkeypatch.setenv("VEILNET_DATA", str(tmp_path))
    assert torch.equal(load("cifar10:cifar", "test").images, torch.from_numpy(expected["test"]))
    monkeypatch.setenv("VEILNET_DATA", str(tmp_path / "cifar"))
    assert len(load("cifar10", "test")) == 2


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def test_unpickler_refuses_anything_but_arrays_and_containers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    files, _ = _cifar_files("cifar10", per_batch=2)
    files["test_batch"] = pickle.dumps({b"data": _Evil()}, protocol=4)
    _write_dir(tmp_path, "cifar10", files)
    with pytest.raises(DataFormatError, match=r"test_batch: not a CIFAR pickle .*refusing to load (posix|os|nt)\.system"):
        load(f"cifar10:{tmp_path}", "test")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_batch": b"\x80\x02garbage"}, r"test_batch: not a CIFAR pickle"),
        ({"test_batch": _py2_pickle([1, 2])}, r"test_batch: expected a pickled dict, got list"),
        ({"test_batch": _py2_pickle({b"labels": [0]})}, r"test_batch: missing the 'data' entry"),
        ({"test_batch": _py2_pickle({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]})}, r"test_batch: expected 'data' as a uint8 array of shape N×3072"),
        ({"test_batch": _py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})}, r"test_batch: expected 2 'labels' in \[0, 10\)"),
        ({"batches.meta": _py2_pickle({b"label_names": "airplane"})}, r"batches.meta: 'label_names' is not a list of names"),
    ],
)
def test_malformed_pickles_are_data_format_errors(tmp_path: Path, change: dict[str, bytes], message: str) -> None:
    files, _ = _cifar_files("cifar10", per_batch=2)
    _write_dir(tmp_path, "cifar10", {**files, **change})
    with pytest.raises(DataFormatError, match=message):
        load(f"cifar10:{tmp_path}", "test")


def test_missing_files_and_broken_archives(tmp_path: Path) -> None:
    files, _ = _cifar_files("cifar10", per_batch=2)
    with pytest.raises(DataFormatError, match=r"does not exist; expected cifar-10-batches-py/ or cifar-10-python.tar.gz"):
        load(f"cifar10:{tmp_path / 'nothing'}")
    with pytest.raises(DataFormatError, match=r"holds neither cifar-10-batches-py/ nor"):
        load(f"cifar10:{tmp_path}")
    folder = _write_dir(tmp_path / "d", "cifar10", files)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataFormatError, match=r"data_batch_3 is missing"):
        load(f"cifar10:{folder}", "train")
    partial = _write_tar(tmp_path / "partial.tar.gz", "cifar10", {k: v for k, v in files.items() if k != "test_batch"})
    with pytest.raises(DataFormatError, match=r"partial.tar.gz: the archive lacks cifar-10-batches-py/test_batch"):
        load(f"cifar10:{partial}", "test")
    whole = _write_tar(tmp_path / "whole.tar.gz", "cifar10", files).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataFormatError, match=r"cut.tar.gz: corrupt or unreadable .tar.gz"):
        load(f"cifar10:{tmp_path / 'cut.tar.gz'}", "train")


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder served over HTTP on 127.0.0.1, set as $VEILNET_CIFAR_URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("VEILNET_CIFAR_URL", f"http://127.0.0.1:{server.server_address[1]}/files/")
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_md5_before_keeping_the_archive(tmp_path: Path, http_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, expected = _cifar_files("cifar10", per_batch=2)
    (http_root / "files").mkdir()
    archive = _write_tar(http_root / "files" / "cifar-10-python.tar.gz", "cifar10", files)
    root = tmp_path / "data"
    with pytest.raises(DataFormatError, match=r"MD5 [0-9a-f]{32}, expected c58f30108f718f92721af3b95e74349a"):
        load(f"cifar10:{root}", "test", download=True)
    assert list(root.iterdir()) == []

    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", dataclasses.replace(cifar.LAYOUTS["cifar10"], md5=md5))
    with pytest.raises(DataFormatError, match=r"holds neither .*veilnet data info cifar10:PATH --download"):
        load(f"cifar10:{root}", "test")
    data = load(f"cifar10:{root}", "test", download=True)
    assert torch.equal(data.images, torch.from_numpy(expected["test"]))
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]
    assert load(f"cifar10:{root / 'cifar-10-python.tar.gz'}", "train", download=True).images.shape == (10, 3, 32, 32)

    with pytest.raises(DataFormatError, match=r"could not download http://127.0.0.1:\d+/files/cifar-100-python.tar.gz .*404"):
        load(f"cifar100:{tmp_path / 'other'}", "test", download=True)
    assert list((tmp_path / "other").iterdir()) == []
