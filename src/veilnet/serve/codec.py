"""Tensor bodies on the wire: one array as ``.npy`` (``application/x-npy``) or safetensors
(``application/x-safetensors``, exactly one tensor).

:func:`read_tensor` parses a body from someone not trusted: it reads the header first and checks
dtype, shape, batch size and the byte count against the constraints *before* anything the size
of the declared shape is allocated (``np.load`` would allocate the declared array first), never
unpickles (object dtypes are refused from the header; the data is viewed with ``np.frombuffer``), and turns every problem into a :class:`BodyError` carrying
an HTTP status and a one-line message that names the problem (never the body's bytes).
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Sequence

import numpy as np
import safetensors.numpy
import torch

from veilnet.checks import is_int_list

NPY = "application/x-npy"
SAFETENSORS = "application/x-safetensors"
MEDIA_TYPES = (NPY, SAFETENSORS)
#: Largest header either format may have (a real one is < 200 bytes).
MAX_HEADER = 10_000
#: The fixed bytes before that header: .npy's magic, version and 4-byte length (version 2), or
#: safetensors' 8-byte length.
HEADER_PREFIX = 12
#: safetensors dtype names -> numpy dtype names (the ones veilnet uses on the wire).
_ST_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "C64": "complex64", "U8": "uint8", "I64": "int64"}


class BodyError(Exception):
    """A request body that cannot be taken: ``status`` is the HTTP status (4xx), ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_tensor(
    body: bytes | bytearray, media_type: str, *, dtype: str | None = None, item_shape: Sequence[int] | None = None, max_items: int | None = None
) -> torch.Tensor:
    """Parse ``body`` into a tensor, checking the header against the constraints first.

    ``dtype`` (numpy name, little-endian), ``item_shape`` (the shape after the batch dimension)
    and ``max_items`` (the largest batch) are checked when given. Status codes: 415 unknown
    media type, 400 malformed or truncated body, 413 batch too large, 422 wrong dtype or shape.
    """
    fortran = False
    if media_type == NPY:
        shape, got, offset, fortran = _npy_header(body)
    elif media_type == SAFETENSORS:
        shape, got, offset = _safetensors_header(body)
    else:
        raise BodyError(415, f"unsupported content type {media_type or '(none)'!r}; send {' or '.join(MEDIA_TYPES)}")
    _check(shape, got, dtype, item_shape, max_items)
    count = math.prod(shape)
    nbytes = count * got.itemsize
    if len(body) - offset != nbytes:
        raise BodyError(
            400,
            f"body holds {len(body) - offset} bytes of data but its header declares "
            f"{nbytes} ({'truncated' if len(body) - offset < nbytes else 'trailing bytes'})",
        )
    # the header is checked and the byte count exact: the data is read in place (a bytearray body
    # gives a writable array, so the tensor shares its memory; a bytes body is copied once)
    array = np.frombuffer(body, dtype=got, count=count, offset=offset)
    array = array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return torch.from_numpy(array)


def write_tensor(tensor: torch.Tensor, media_type: str, name: str = "tensor") -> bytes:
    """Encode ``tensor`` as a ``media_type`` body (safetensors stores it under ``name``)."""
    array = tensor.detach().cpu().contiguous().numpy()
    if media_type == NPY:
        return _npy_prefix(array.shape, array.dtype.str) + array.tobytes()
    if media_type == SAFETENSORS:
        return safetensors.numpy.save({name: array})
    raise BodyError(415, f"unsupported content type {media_type!r}; use {' or '.join(MEDIA_TYPES)}")


@functools.lru_cache(maxsize=64)
def _npy_prefix(shape: tuple[int, ...], descr: str) -> bytes:
    """The .npy magic and header of a C-ordered array (what ``np.save`` writes before the data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _check(shape: tuple[int, ...], got: np.dtype, dtype: str | None, item_shape: Sequence[int] | None, max_items: int | None) -> None:
    if item_shape is not None and (len(shape) != len(item_shape) + 1 or tuple(shape[1:]) != tuple(item_shape)):
        want = "N×" + "×".join(map(str, item_shape))
        raise BodyError(422, f"expected a tensor of shape {want}, got shape {'×'.join(map(str, shape)) or 'scalar'}")
    if not shape:
        raise BodyError(422, "expected a batch (at least one dimension), got a scalar")
    if max_items is not None and shape[0] > max_items:
        raise BodyError(413, f"batch of {shape[0]} exceeds the limit of {max_items} per request")
    if dtype is not None and got != np.dtype(dtype).newbyteorder("<"):
        raise BodyError(422, f"expected dtype {dtype} (little-endian), got {got.str if got.kind != 'O' else 'object'}")


def _npy_header(body: bytes | bytearray) -> tuple[tuple[int, ...], np.dtype, int, bool]:
    """(shape, dtype, data offset, Fortran order) of an .npy body; the header's text is parsed
    once per distinct header (:func:`_parse_npy_header`), not per request."""
    if bytes(body[:6]) != b"\x93NUMPY" or len(body) < 10:
        raise BodyError(400, "not a valid .npy body: the magic string is missing")
    width = {1: 2, 2: 4}.get(body[6])
    if width is None or body[7] != 0:
        raise BodyError(400, f"not a valid .npy body: unsupported .npy version {body[6]}.{body[7]}")
    length = int.from_bytes(body[8 : 8 + width], "little")
    if length > MAX_HEADER:
        raise BodyError(400, f"not a valid .npy body: header of {length} bytes exceeds {MAX_HEADER}")
    offset = 8 + width + length
    shape, dtype, fortran = _parse_npy_header(bytes(body[:offset]))
    return shape, dtype, offset, fortran


@functools.lru_cache(maxsize=64)
def _parse_npy_header(header: bytes) -> tuple[tuple[int, ...], np.dtype, bool]:
    f = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=MAX_HEADER)
    except Exception as exc:  # numpy raises ValueError, EOFError, SyntaxError, ... for bad headers
        raise BodyError(400, f"not a valid .npy body: {first_line(exc)}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise BodyError(422, f"expected a plain numeric dtype, got {dtype.str if not dtype.hasobject else 'object'}")
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def _safetensors_header(body: bytes | bytearray) -> tuple[tuple[int, ...], np.dtype, int]:
    if len(body) < 8:
        raise BodyError(400, f"not a valid safetensors body: {len(body)} bytes, shorter than its 8-byte header length")
    size = int.from_bytes(body[:8], "little")
    if size > MAX_HEADER or size > len(body) - 8:
        raise BodyError(400, f"not a valid safetensors body: header length {size} exceeds {min(MAX_HEADER, len(body) - 8)} bytes")
    try:
        header = json.loads(body[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(400, f"not a valid safetensors body: header is not JSON ({first_line(exc)})") from None
    if not isinstance(header, dict):
        raise BodyError(400, "not a valid safetensors body: header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) != 1:
        raise BodyError(422, f"expected exactly one tensor in the safetensors body, got {len(tensors)}")
    (entry,) = tensors.values()
    if not isinstance(entry, dict) or not is_int_list(entry.get("shape"), minimum=0):
        raise BodyError(400, "not a valid safetensors body: tensor entry needs a shape of non-negative integers")
    name = entry.get("dtype")
    if name not in _ST_DTYPES:
        raise BodyError(422, f"unsupported safetensors dtype {str(name)[:20]!r}; veilnet takes {', '.join(_ST_DTYPES)}")
    dtype = np.dtype(_ST_DTYPES[name]).newbyteorder("<")
    shape = tuple(entry["shape"])
    nbytes = math.prod(shape) * dtype.itemsize
    if entry.get("data_offsets") != [0, nbytes]:
        raise BodyError(400, f"not a valid safetensors body: data_offsets must be [0, {nbytes}] for shape {list(shape)}")
    return shape, dtype, 8 + size


def first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
