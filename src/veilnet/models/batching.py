"""The batch size that is fastest per image for a model on this machine, measured once.

Post-averaging runs 6K + 1 points per image and the evasion attacks run whole test sets; both
hand the model batches of the size :func:`tuned_batch_size` measured fastest per point for that
model, device, thread count, grad mode and input shape (kept in memory and on disk).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from veilnet.data.cache import cache_dir
from veilnet.errors import OutputWriteError
from veilnet.models.prepared import Prepared
from veilnet.paths import write_text

#: Points of a 3×32×32 image that a GPU's candidate batches and memory cap are sized for; larger
#: images get proportionally fewer (see :func:`batch_candidates`).
CIFAR_VALUES = 3 * 32 * 32
_tuned: dict[str, int] = {}


def batch_candidates(device: torch.device, shape: Sequence[int]) -> list[int]:
    """Batch sizes tried by :func:`tuned_batch_size`: powers of two from 16 up to 512 points on a CPU
    and 16,384 on a GPU for 3×32×32 images, scaled down for larger images (at least 16)."""
    top = (512 if device.type == "cpu" else 16384) * CIFAR_VALUES // math.prod(shape)
    sizes = [16]
    while sizes[-1] * 2 <= top:
        sizes.append(sizes[-1] * 2)
    return sizes


def _signature(model: nn.Module, images: torch.Tensor) -> str:
    """What the best batch size depends on: the device (its model name), threads, grad mode, the
    network (class, parameter shapes) and the input's shape and dtype."""
    device = images.device
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{device.type}:{platform.machine()}:{os.cpu_count()}cores:{torch.get_num_threads()}threads"
    params = ",".join("x".join(map(str, p.shape)) for p in model.parameters())
    return f"{where}|grad={torch.is_grad_enabled()}|{type(model).__qualname__}({params})|{tuple(images.shape[1:])}|{images.dtype}"


def _cache_file() -> Path:
    return cache_dir() / "batch_size.json"


def _read_disk_cache() -> dict[str, int]:
    try:
        with open(_cache_file()) as f:
            table = json.load(f)
        return {k: int(v) for k, v in table.items()} if isinstance(table, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def _write_disk_cache(key: str, value: int) -> None:
    """Add one entry, written atomically (:func:`veilnet.paths.write_text`: a reader never sees half a file)."""
    try:
        write_text(_cache_file(), json.dumps({**_read_disk_cache(), key: value}, indent=1, sort_keys=True))
    except OutputWriteError:
        pass  # the in-memory table still holds it; an unwritable cache only costs a re-measurement


def _seconds_per_point(model: nn.Module, batch: torch.Tensor) -> float:
    """Best of two timed forward passes over ``batch`` (after one untimed), per point."""
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    best = math.inf
    for i in range(3):
        sync()
        start = time.perf_counter()
        model(batch)
        sync()
        if i:
            best = min(best, time.perf_counter() - start)
    return best / batch.shape[0]


def tuned_batch_size(model: nn.Module, images: torch.Tensor) -> int:
    """The points-per-forward batch size that is fastest per point for ``model`` on ``images``'
    device, measured on this machine over :func:`batch_candidates` (stopping once two sizes in a row
    are slower than the best), in the current grad mode.

    Measured once per device and model signature (:func:`_signature`), then kept in memory and in
    ``$XDG_CACHE_HOME/veilnet/batch_size.json``. A model in training mode is not measured
    (its normalisation statistics would move): it gets 100. On a GPU a size that runs out of
    memory ends the search. A :class:`~veilnet.models.Prepared` model is measured eagerly (a
    compiled one would compile once per candidate size).
    """
    if isinstance(model, Prepared):
        model = model.eager
    if model.training:
        return 100
    key = _signature(model, images)
    if key not in _tuned:
        disk = _read_disk_cache()
        if key not in disk:
            disk[key] = _measure(model, images)
            _write_disk_cache(key, disk[key])
        _tuned[key] = disk[key]
    return _tuned[key]


def _measure(model: nn.Module, images: torch.Tensor) -> int:
    sizes = batch_candidates(images.device, images.shape[1:])
    probe = images[:1].detach().expand(sizes[-1], *images.shape[1:]).contiguous()
    best, best_time, worse = sizes[0], math.inf, 0
    for size in sizes:
        try:
            per_point = _seconds_per_point(model, probe[:size])
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        if per_point < best_time:
            best, best_time, worse = size, per_point, 0
        else:
            worse += 1
            if worse == 2:
                break
    return best
