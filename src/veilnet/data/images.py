"""The one image decoder: bytes or files -> uint8 pixels, and arrays -> checked pixels.

Used by the image folders (:mod:`veilnet.data.folder`), the keyed command line and the service's
client, so every path by which an image enters veilnet refuses the same bad inputs with the
same one-line :class:`~veilnet.errors.DataFormatError`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from veilnet.errors import DataFormatError, ShapeError

GRAY_MODES = frozenset({"1", "L", "LA"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
#: File suffixes read as images (``.npy`` is read as an array of pixels).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def decode_image(data: bytes, where: str, *, channels: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """One encoded image (PNG, JPEG, ...) as ``H×W×C`` uint8.

    ``channels`` None keeps the file's own kind (C = 1 for grayscale modes, 3 for colour);
    1 or 3 converts to it. ``size`` = (width, height) refuses any other size. ``where`` names
    the image in errors.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            if channels is None:
                mode = "L" if im.mode in GRAY_MODES else "RGB" if im.mode in COLOUR_MODES else None
                if mode is None:
                    raise DataFormatError(f"{where}: unsupported image mode {im.mode} (expected a grayscale or colour image)")
            elif channels in (1, 3):
                mode = "L" if channels == 1 else "RGB"
            else:
                raise DataFormatError(f"{where}: {channels}-channel inputs cannot come from an image file (1 or 3 channels)")
            if size is not None and im.size != tuple(size):
                raise DataFormatError(f"{where}: image is {im.size[0]}×{im.size[1]} pixels, expected {size[0]}×{size[1]}")
            pixels = np.asarray(im if im.mode == mode else im.convert(mode))
    except DataFormatError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(f"{where}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def as_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """An array read from a file as pixels: uint8 (0–255) as it is, float only when in [0, 1].

    A float array holding 0–255 values (or NaN/inf) is refused with a :class:`ShapeError`
    instead of being clamped into garbage.
    """
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ShapeError(f"{where}: pixels must be uint8 (0–255) or float in [0, 1], got dtype {array.dtype}")
    if array.size:
        if not np.isfinite(array).all():
            raise ShapeError(f"{where}: float pixels contain NaN or infinity")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            hint = " (0–255 values? save them as uint8)" if hi > 1.0 else ""
            raise ShapeError(f"{where}: float pixels must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")
    return array.astype(np.float32, copy=False)


def read_image_files(paths: Sequence[str | os.PathLike[str]], *, channels: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Image files (and ``.npy`` arrays ``C×H×W``) -> one ``N×C×H×W`` array of pixels.

    Images give uint8; ``.npy`` files give uint8 or float32 in [0, 1] (see :func:`as_pixels`).
    All files must share one shape and type; ``channels``/``size`` (width, height) are enforced
    for images. Each failure is a :class:`DataFormatError` naming the file.
    """
    arrays = []
    for item in paths:
        path = Path(item)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such image file")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataFormatError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            if array.ndim != 3:
                raise DataFormatError(f"{path}: expected a C×H×W array, got shape {array.shape}")
            arrays.append(as_pixels(array, str(path)))
        else:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
            arrays.append(decode_image(data, str(path), channels=channels, size=size).transpose(2, 0, 1))
    if not arrays:
        raise DataFormatError("no input images given")
    if len({(a.dtype, a.shape) for a in arrays}) != 1:
        raise DataFormatError("input images differ in size, channels or type; give images of one shape")
    return np.ascontiguousarray(np.stack(arrays))
