"""veilnet.data: specs, image folders (directory and zip), digits, the cache, splits and partitions, CLI."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from veilnet import cli
from veilnet.data import ImageSplit, cache_dir, folder, load, partition_dirichlet, partition_iid, subset
from veilnet.errors import ConfigError, DataFormatError, ShapeError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pixels(seed: int, size: tuple[int, int] = (6, 5), channels: int = 3) -> np.ndarray:
    shape = (size[1], size[0]) + ((channels,) if channels == 3 else ())
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _make_folder(root: Path, counts: dict[str, dict[str, int]], *, channels: int = 3) -> dict[str, list[tuple[str, np.ndarray]]]:
    """PNG images root/split/class/NNN.png; returns the expected (class, pixels) per split in
    load order: classes by name, then file names."""
    expected: dict[str, list[tuple[str, np.ndarray]]] = {}
    for split, classes in counts.items():
        expected[split] = []
        for cls in sorted(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(classes[cls]):
                pixels = _pixels(len(expected[split]) + 100 * len(expected), channels=channels)
                Image.fromarray(pixels).save(root / split / cls / f"{i:03d}.png")
                expected[split].append((cls, pixels))
    return expected


def _zip_dir(src: Path, dest: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(src.rglob("*"), reverse=True):  # the loader must sort
            if path.is_file():
                zf.write(path, prefix + path.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return dest


COUNTS = {"train": {"b_cls": 3, "a_cls": 2, "c_cls": 1}, "test": {"a_cls": 1, "c_cls": 2}}


def _check(data: ImageSplit, expected: list[tuple[str, np.ndarray]], classes: list[str]) -> None:
    assert data.classes == classes
    assert [classes[i] for i in data.labels.tolist()] == [cls for cls, _ in expected]
    want = np.stack([p if p.ndim == 3 else p[..., None] for _, p in expected]).transpose(0, 3, 1, 2)
    assert torch.equal(data.images, torch.from_numpy(want))


def test_folder_from_directory_and_zip(tmp_path: Path) -> None:
    expected = _make_folder(tmp_path / "imgs", COUNTS)
    (tmp_path / "imgs" / "README.txt").write_text("ignored: not under a split")
    (tmp_path / "imgs" / "train" / "a_cls" / ".DS_Store").write_bytes(b"\0junk")
    plain = _zip_dir(tmp_path / "imgs", tmp_path / "plain.zip")
    wrapped = _zip_dir(tmp_path / "imgs", tmp_path / "wrapped.zip", prefix="cifar-ish/", extra={"__MACOSX/cifar-ish/._x": b"junk"})
    classes = ["a_cls", "b_cls", "c_cls"]  # the union over splits: test has no b_cls but keeps its labels
    for spec in (f"folder:{tmp_path / 'imgs'}", f"folder:{plain}", f"folder:{wrapped}"):
        for split in ("train", "test"):
            data = load(spec, split)
            _check(data, expected[split], classes)
            assert data.spec == spec and data.split == split and data.image_shape == (3, 5, 6)
    assert load(f"folder:{plain}", "test").class_counts().tolist() == [1, 0, 2]


def test_grayscale_folder_has_one_channel_and_colour_modes_become_rgb(tmp_path: Path) -> None:
    expected = _make_folder(tmp_path / "gray", {"train": {"x": 2, "y": 1}}, channels=1)
    _check(load(f"folder:{tmp_path / 'gray'}", "train"), expected["train"], ["x", "y"])
    rgba = tmp_path / "rgba" / "test" / "x"
    rgba.mkdir(parents=True)
    pixels = _pixels(1, channels=3)
    Image.fromarray(pixels).convert("RGBA").save(rgba / "0.png")
    Image.fromarray(pixels).save(rgba / "1.png")
    data = load(f"folder:{tmp_path / 'rgba'}", "test")
    assert torch.equal(data.images[0], data.images[1]) and data.images.shape == (2, 3, 5, 6)


def test_parallel_decoding_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _make_folder(tmp_path / "imgs", {"train": {"a": 9, "b": 8}})
    archive = _zip_dir(tmp_path / "imgs", tmp_path / "imgs.zip")
    monkeypatch.setattr(folder, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(folder, "_CHUNK", 3)
    monkeypatch.setenv("VEILNET_DATA_WORKERS", "2")
    assert folder._workers(17) == 2
    for spec in (f"folder:{tmp_path / 'imgs'}", f"folder:{archive}"):
        _check(load(spec, "train"), expected["train"], ["a", "b"])
    Image.fromarray(_pixels(0, size=(7, 5))).save(tmp_path / "imgs" / "train" / "b" / "zz.png")
    with pytest.raises(DataFormatError, match=r"train/b/zz.png: image is 7×5 RGB, expected 6×5 RGB like .*train/a/000.png"):
        load(f"folder:{tmp_path / 'imgs'}", "train")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (
            lambda d: Image.fromarray(_pixels(0, size=(8, 8))).save(d / "train/a/big.png"),
            r"train/a/big.png: image is 8×8 RGB, expected 6×5 RGB like .*train/a/000.png",
        ),
        (lambda d: Image.fromarray(_pixels(0, channels=1)).save(d / "train/b/gray.png"), r"train/b/gray.png: image is 6×5 L, expected 6×5 RGB"),
        (lambda d: (d / "train/b/notes.txt").write_text("hello"), r"train/b/notes.txt: not a readable image"),
        (lambda d: (d / "train/b/cut.png").write_bytes((d / "train/b/000.png").read_bytes()[:60]), r"train/b/cut.png: not a readable image"),
        (lambda d: Image.fromarray(_pixels(0)).save(d / "train/loose.png"), r"train/loose.png: expected SPLIT/CLASS/IMAGE .* depth 2"),
        (
            lambda d: (d / "train/b/sub").mkdir() or Image.fromarray(_pixels(0)).save(d / "train/b/sub/x.png"),
            r"train/b/sub/x.png: expected SPLIT/CLASS/IMAGE .* depth 4",
        ),
        (lambda d: Image.fromarray(_pixels(0)[..., 0].astype(np.uint16) * 257).save(d / "train/b/int.png"), r"train/b/int.png: unsupported image mode I"),
    ],
)
def test_folder_errors_name_the_file_and_what_was_expected(tmp_path: Path, spoil, message: str) -> None:  # type: ignore[no-untyped-def]
    _make_folder(tmp_path / "d", {"train": {"a": 1, "b": 1}})
    spoil(tmp_path / "d")
    with pytest.raises(DataFormatError, match=message):
        load(f"folder:{tmp_path / 'd'}", "train")
    with pytest.raises(DataFormatError, match=message):
        load(f"folder:{_zip_dir(tmp_path / 'd', tmp_path / 'd.zip')}", "train")


def test_bad_specs_paths_and_archives(tmp_path: Path) -> None:
    _make_folder(tmp_path / "d", {"train": {"a": 1}})
    (tmp_path / "notzip.zip").write_text("plain text")
    whole = _zip_dir(tmp_path / "d", tmp_path / "whole.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[:40] + whole[-22:])  # end record intact, the rest gone
    flipped = bytearray(whole)
    flipped[80] ^= 0xFF  # inside the first member's data: a CRC error
    (tmp_path / "crc.zip").write_bytes(bytes(flipped))
    cases = [
        ("folder:" + str(tmp_path / "missing"), "train", r"missing does not exist \(expected a directory or a .zip"),
        ("folder:" + str(tmp_path / "notzip.zip"), "train", r"notzip.zip: expected a directory or a .zip .* not a zip archive"),
        ("folder:" + str(tmp_path / "cut.zip"), "train", r"cut.zip: corrupt zip archive"),
        ("folder:" + str(tmp_path / "crc.zip"), "train", r"crc.zip:train/a/000.png: cannot read \(Bad CRC-32"),
        ("folder:" + str(tmp_path / "d"), "test", r"d has no test images \(expected test/CLASS/IMAGE files\)"),
        ("folder:", "train", r"expected folder:PATH"),
        ("imagenet:/data", "train", r"unknown data set 'imagenet:/data'; expected one of digits, folder:PATH, cifar10:PATH, cifar100:PATH"),
        ("digits", "val", r"unknown split 'val' for 'digits'; expected one of train, test"),
        ("digits:size=abc", "train", r"digits: bad option 'size=abc'"),
        ("digits:depth=3", "train", r"digits: bad option 'depth=3'"),
        ("digits:channels=2", "train", r"channels 1 or 3"),
    ]
    for spec, split, message in cases:
        with pytest.raises(DataFormatError, match=message):
            load(spec, split)


def test_digits_is_sklearn_digits_scaled_and_split_stratified() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = load("digits", "train"), load("digits", "test")
    assert train.classes == [str(d) for d in range(10)] and train.image_shape == (3, 32, 32)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert torch.all(abs(test.class_counts() - 0.2 * (train.class_counts() + test.class_counts())) <= 0.5)
    assert torch.equal(train.images[:, 0], train.images[:, 2]) and train.images.max() == 255
    raw = load("digits:size=8,channels=1", "test")
    assert raw.image_shape == (1, 8, 8)
    scaled = torch.from_numpy(np.round(digits.images * 255 / 16)).to(torch.uint8)
    rows = [int(np.flatnonzero((scaled.numpy() == img[0].numpy()).all(axis=(1, 2)))[0]) for img in raw.images[:20]]
    assert torch.equal(raw.labels[:20], torch.from_numpy(digits.target[rows]))
    big = F.interpolate(torch.from_numpy(digits.images[rows]).float().unsqueeze(1) * (255 / 16), size=32, mode="bilinear")
    assert torch.equal(test.images[:20, :1], big.round().to(torch.uint8))


def test_cache_hit_invalidation_and_repair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _make_folder(tmp_path / "d", {"train": {"a": 2}, "test": {"a": 1}})
    spec = f"folder:{tmp_path / 'd'}"
    first = load(spec, "train")
    entries = sorted((cache_dir() / "data").glob("folder-d-train-*"))
    assert len(entries) == 1 and {p.name for p in entries[0].iterdir()} == {"images.npy", "labels.npy", "meta.json"}

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(folder, "_decode_all", no_decoding)
        again = load(spec, "train")
        assert torch.equal(again.images, first.images) and again.classes == first.classes
        (tmp_path / "link").symlink_to(tmp_path / "d")
        m.chdir(tmp_path)
        assert load("folder:link", "train").spec == "folder:link"  # same source, another spelling: cache hit

    changed = _pixels(99)
    Image.fromarray(changed).save(tmp_path / "d" / "train" / "a" / "000.png")
    os.utime(tmp_path / "d" / "train" / "a" / "000.png", ns=(1, 1))
    fresh = load(spec, "train")
    assert torch.equal(fresh.images[0], torch.from_numpy(changed).permute(2, 0, 1))
    entries = sorted((cache_dir() / "data").glob("folder-d-train-*"))
    assert len(entries) == 1, "the stale entry is removed"

    (entries[0] / "images.npy").write_bytes(b"corrupt")
    assert torch.equal(load(spec, "train").images, fresh.images)
    assert not list((cache_dir() / "data").glob(".tmp-*"))
    _check(load(spec, "test"), expected["test"], ["a"])


def _numbered(n: int, num_classes: int) -> ImageSplit:
    """n images whose first two pixels spell their index; label = index mod num_classes."""
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ImageSplit(images=images, labels=torch.arange(n) % num_classes, classes=[f"c{i}" for i in range(num_classes)], spec="numbered", split="train")


def _ids(split: ImageSplit) -> list[int]:
    return (split.images[:, 0, 0, 0].long() + 256 * split.images[:, 0, 0, 1].long()).tolist()


def test_image_split_basics() -> None:
    data = _numbered(10, 3)
    assert len(data) == 10 and data.num_classes == 3 and data.class_counts().tolist() == [4, 3, 3]
    assert _ids(data.select([7, 2])) == [7, 2] and _ids(data.select(data.labels == 1)) == [1, 4, 7]
    assert data.float_images().dtype == torch.float32 and data.float_images().max() == 9 / 255
    with pytest.raises(ShapeError):
        ImageSplit(images=data.images.float(), labels=data.labels, classes=data.classes)
    with pytest.raises(ShapeError):
        ImageSplit(images=data.images, labels=data.labels[:3], classes=data.classes)


def test_subset_first_or_seeded_per_class() -> None:
    data = _numbered(30, 3)
    assert _ids(subset(data, 2)) == [0, 1, 2, 3, 4, 5]
    a, b = subset(data, 4, seed=1), subset(data, 4, seed=torch.Generator().manual_seed(1))
    assert _ids(a) == _ids(b) and sorted(_ids(a)) == _ids(a) and a.class_counts().tolist() == [4, 4, 4]
    assert _ids(subset(data, 4, seed=2)) != _ids(a)
    with pytest.raises(ConfigError, match=r"class 'c0' has 10 images .*fewer than n_per_class=11"):
        subset(data, 11)


def test_partitions_are_disjoint_covering_and_seeded() -> None:
    data = _numbered(600, 10)
    iid = partition_iid(data, 7, seed=0)
    assert max(len(p) for p in iid) - min(len(p) for p in iid) <= 1
    assert sorted(i for p in iid for i in _ids(p)) == list(range(600))
    for alpha in (0.1, 100.0):
        parts = partition_dirichlet(data, 5, alpha, seed=3)
        assert sorted(i for p in parts for i in _ids(p)) == list(range(600))
        assert [_ids(p) for p in parts] == [_ids(p) for p in partition_dirichlet(data, 5, alpha, seed=3)]
    skew = [p.class_counts().max().item() / max(len(p), 1) for p in partition_dirichlet(data, 5, 0.1, seed=3)]
    even = [p.class_counts().max().item() / len(p) for p in partition_dirichlet(data, 5, 100.0, seed=3)]
    assert np.mean(skew) > 0.3 > 0.15 > np.mean(even)  # share of the most common class; 0.1 when even
    with pytest.raises(ConfigError):
        partition_iid(data, 0, seed=0)
    with pytest.raises(ConfigError):
        partition_dirichlet(data, 3, 0.0, seed=0)


def test_cli_data_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _make_folder(tmp_path / "d", COUNTS)
    assert cli.main(["data", "info", f"folder:{tmp_path / 'd'}"]) == 0
    out = capsys.readouterr().out
    assert "train:   6 images, 3×5×6 uint8" in out and "test:    3 images" in out
    assert "| 1 | b_cls | 3 | 0 |" in out and str(cache_dir() / "data") in out
    assert cli.main(["data", "info", f"folder:{tmp_path / 'nope'}"]) == 2
    assert "nope does not exist" in capsys.readouterr().err


@pytest.mark.shared
def test_real_jpeg_cifar10_test_split_and_cached_reload(cifar_jpeg_zip: Path) -> None:
    spec = f"folder:{cifar_jpeg_zip}"
    test = load(spec, "test")
    assert test.images.shape == (10000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.classes == CIFAR10_CLASSES and test.class_counts().tolist() == [1000] * 10
    assert 100 < test.float_images().mean().item() * 255 < 150
    start = time.perf_counter()
    again = load(spec, "test")
    assert time.perf_counter() - start < 2.0
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
