"""A model prepared for repeated execution: compiled with torch's inductor where it pays, eager where not.

:func:`prepare` is the one place that decides. It compiles ``model`` with ``torch.compile``
(inductor backend, static shapes) unless compiling is off (``compile=False``, or the environment
variable ``VEILNET_COMPILE=0``, which the test suite sets), or cannot work here (no C++ compiler
for a CPU model, no Triton for a GPU model), or fails on the first call (an unsupported operation);
in each of those cases the model runs eagerly. Either way one log line (logger
``veilnet.models.prepared``, at the model's first call, so a run that stops on a user's mistake
before any work prints none) says which, and :attr:`Prepared.status` holds it.

Varying batch sizes. inductor specialises on the input's shape: a new batch size costs a
recompile of seconds to a minute. A :class:`Prepared` model therefore runs one batch size only,
its ``chunk`` (by default the size of the first batch it sees): in eval mode a larger batch runs
as several chunks and a smaller one is padded with zeros up to the chunk (the rows are
independent in eval mode, so the padding does not change the others' outputs, and it receives no
gradient); in training mode (batch normalisation sees the whole batch, so no padding) a batch of
another size runs eagerly. So a run compiles once per mode.

Between runs inductor keeps its compiled artefacts on disk (``$TORCHINDUCTOR_CACHE_DIR``, by
default here ``$XDG_CACHE_HOME/veilnet/inductor``), which cuts a later run's warm-up.

Results: compiled outputs equal eager ones up to float rounding (tests/test_prepare.py checks
logits within 1e-5 relative and identical attack success masks on a fixed seed).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from veilnet.data.cache import cache_dir

__all__ = ["Prepared", "compile_problem", "prepare"]

log = logging.getLogger(__name__)


def compile_problem(device: torch.device) -> str | None:
    """Why inductor cannot compile for ``device`` here (None when it can): on a CPU it needs a C++
    compiler (``$CXX`` or g++/clang++), on a CUDA GPU Triton; other devices are not compiled."""
    if device.type == "cpu":
        names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
        return None if any(shutil.which(name) for name in names) else f"no C++ compiler found ({', '.join(names)})"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed for this CUDA build"
    return f"inductor is not used on {device.type}"


class Prepared(nn.Module):
    """``model`` run compiled (``compiled`` not None) or eagerly, one batch size (``chunk``) at a time.

    It behaves as the model it wraps: attribute look-ups it lacks (``normalize``, ``veilnet_arch``,
    ...) go to the wrapped model, ``train()``/``eval()`` switch it, and its parameters are the
    model's. ``eager`` is the wrapped model (save that one: this wrapper's ``state_dict`` keys carry
    a ``model.`` prefix). If the first compiled call fails, the model runs eagerly from then on.
    """

    def __init__(self, model: nn.Module, compiled: Callable[[torch.Tensor], torch.Tensor] | None, status: str, chunk: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.status = status
        self.chunk = chunk
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: its parameters are the model's
        self._warm: set[bool] = set()  # the modes (training or not) whose first compiled call succeeded
        self._announced = False

    @property
    def eager(self) -> nn.Module:
        return self.model

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None or x.shape[0] == 0:
            self._announce()
            return self.model(x)
        if self.chunk is None:
            self.chunk = x.shape[0]
        if self.model.training:
            return self._call(x) if x.shape[0] == self.chunk else self.model(x)
        outs = []
        for part in x.split(self.chunk):
            short = self.chunk - part.shape[0]
            if short:
                part = torch.cat([part, part.new_zeros(short, *part.shape[1:])])
            out = self._call(part)
            outs.append(out[: out.shape[0] - short] if short else out)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled model on one chunk; its first call in a mode compiles, and a failure there
        turns compiling off (one warning) and answers eagerly."""
        assert self._compiled is not None
        mode = self.model.training
        if mode in self._warm:
            return self._compiled(x)
        try:
            out = self._compiled(x)
        except Exception as exc:  # inductor and dynamo raise many types; eager is always correct
            root: BaseException = exc
            while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
                root = inner  # dynamo wraps the backend's own error
            reason = (str(root).strip().splitlines() or [""])[0][:200]
            object.__setattr__(self, "_compiled", None)
            self.status = f"{type(self.model).__name__}: compiling failed ({type(root).__name__}: {reason}); running eagerly"
            log.warning(self.status)
            self._announced = True
            return self.model(x)
        self._warm.add(mode)
        self._announce()
        return out

    def _announce(self) -> None:
        if not self._announced:
            log.info(self.status)
            self._announced = True


def prepare(model: nn.Module, compile: bool = True, *, chunk: int | None = None, backend: str | Callable[..., Any] = "inductor") -> Prepared:
    """``model`` ready for repeated calls: compiled where it can be, else eager (see the module docstring).

    Arguments:
        model: any ``nn.Module`` taking one batched tensor (its parameters' device decides the target).
        compile: False runs eagerly; True compiles unless ``VEILNET_COMPILE=0`` or
            :func:`compile_problem` says it cannot work here.
        chunk: the one batch size the compiled model runs (None: the first batch's size).
        backend: ``torch.compile`` backend (``"inductor"``; tests use lighter ones).

    An already prepared model is returned as it is. Its first call logs one line saying whether
    it runs compiled.
    """
    if isinstance(model, Prepared):
        return model
    name = type(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model).__name__
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    problem = None
    if compile is False:
        problem = "compiling off"
    elif os.environ.get("VEILNET_COMPILE", "").strip() == "0":
        problem = "compiling off (VEILNET_COMPILE=0)"
    elif backend == "inductor":
        problem = compile_problem(device)
    if problem is not None:
        return Prepared(model, None, f"{name}: {problem}; running eagerly", chunk)
    if backend == "inductor":
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    compiled = torch.compile(model, backend=backend, dynamic=False)
    how = backend if isinstance(backend, str) else getattr(backend, "__name__", type(backend).__name__)
    return Prepared(model, compiled, f"{name}: compiled with torch.compile ({how}, {device.type}, one batch size: {chunk or 'the first batch'})", chunk)
