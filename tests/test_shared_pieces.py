"""The pieces every command shares: the image decoder, output-path checks, device names."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from veilnet.data.images import as_pixels, decode_image, read_image_files
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError, DataFormatError, OutputExistsError, ShapeError
from veilnet.paths import prepare_output


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_image_keeps_or_converts_the_colour_kind_and_checks_size() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(_png(rgb), "x"), rgb)
    assert decode_image(_png(rgb), "x", channels=1).shape == (5, 7, 1)
    grey = rgb[..., 0]
    assert decode_image(_png(grey), "x").shape == (5, 7, 1)
    assert np.array_equal(decode_image(_png(grey), "x", channels=3)[..., 2], grey)
    with pytest.raises(DataFormatError, match="x: image is 7×5 pixels, expected 8×8"):
        decode_image(_png(rgb), "x", size=(8, 8))
    with pytest.raises(DataFormatError, match="x: not a readable image"):
        decode_image(b"not an image", "x")


def test_float_pixels_outside_unit_range_are_refused_not_clamped() -> None:
    assert as_pixels(np.full((3, 2, 2), 0.5, np.float64), "a").dtype == np.float32
    assert as_pixels(np.full((3, 2, 2), 200, np.uint8), "a").dtype == np.uint8
    with pytest.raises(ShapeError, match=r"a: float pixels must lie in \[0, 1\].*save them as uint8"):
        as_pixels(np.full((3, 2, 2), 200.0, np.float32), "a")
    with pytest.raises(ShapeError, match="NaN"):
        as_pixels(np.full((3, 2, 2), np.nan, np.float32), "a")
    with pytest.raises(ShapeError, match="dtype int64"):
        as_pixels(np.zeros((3, 2, 2), np.int64), "a")


def test_read_image_files_stacks_images_and_npy_and_names_the_bad_file(tmp_path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(_png(rgb))
    (tmp_path / "b.png").write_bytes(_png(rgb[::-1].copy()))
    out = read_image_files([tmp_path / "a.png", tmp_path / "b.png"])
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.uint8
    np.save(tmp_path / "c.npy", rgb.transpose(2, 0, 1) * 1.0)  # 0–255 as float: refused
    with pytest.raises(ShapeError, match="c.npy"):
        read_image_files([tmp_path / "c.npy"])
    with pytest.raises(DataFormatError, match="differ"):
        np.save(tmp_path / "d.npy", np.zeros((3, 4, 4), np.float32))
        read_image_files([tmp_path / "a.png", tmp_path / "d.npy"])
    with pytest.raises(DataFormatError, match="missing.png: no such image file"):
        read_image_files([tmp_path / "missing.png"])


def test_prepare_output_refuses_overwrite_and_impossible_paths(tmp_path) -> None:
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="old.json exists; pass --force"):
        prepare_output(tmp_path / "old.json")
    assert prepare_output(tmp_path / "old.json", force=True) == tmp_path / "old.json"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.md").write_text("x")
    with pytest.raises(OutputExistsError, match="report.md"):
        prepare_output(tmp_path / "run", exists=["report.md", "result.json"])
    prepare_output(tmp_path / "run", exists=["other.md"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="afile is a file"):
        prepare_output(tmp_path / "afile" / "deeper" / "out.json")
    made = prepare_output(tmp_path / "new" / "dir", mkdir=True)
    assert made.is_dir()
    assert (tmp_path / "old.json").read_text() == "{}"  # nothing lost


def test_prepare_output_refuses_an_unwritable_folder(tmp_path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # root may write anywhere, so the permission answer is the OS's for a normal user
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != os.fspath(locked))
    with pytest.raises(ConfigError, match="folder .*locked is not writable"):
        prepare_output(locked / "out.json")


def test_resolve_device_names_the_problem() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
