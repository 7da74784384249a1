"""Saving and loading models (docs/architecture.md, "Weights").

A saved model is two files side by side: ``STEM.safetensors`` (every tensor of the state dict,
buffers such as ``normalize.mean`` and BN running statistics included) and ``STEM.json``, the
card: ``{"format": "veilnet-model", "version": 1, "architecture": name, "kwargs": {...},
"data": spec, "metrics": {...}, "extra": {...}, "sha256": of the weights file}``, and
optionally ``"input_shape": [C, H, W]``, the images the model was trained on (see
:func:`veilnet.models.check_input`), and ``"classes": [name, ...]``, the name of each output
class (the training split's :attr:`~veilnet.data.ImageSplit.classes`; public: a server shows them).
:func:`load` rebuilds the model from the card with :func:`veilnet.models.create` and loads the
weights strictly: a file that does not fit is a :class:`ModelFormatError`, never a silent
partial model. :func:`load_cifar_resnet` reads the public akamaster CIFAR ResNet checkpoints
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from veilnet.checks import is_int_list
from veilnet.errors import ConfigError, ModelFormatError, VeilnetError
from veilnet.models.registry import create
from veilnet.models.resnet_cifar import DEPTHS
from veilnet.paths import atomic_write, prepare_output, write_text

FORMAT = "veilnet-model"
VERSION = 1
#: File names used when a model is saved into (or loaded from) a directory.
DIR_STEM = "model"

#: Where the pretrained CIFAR ResNets come from, for the errors that find none (README, "Data and checkpoints").
CIFAR_RESNET_SOURCE = "the pretrained CIFAR ResNets are the .th files in pretrained_models/ of github.com/akamaster/pytorch_resnet_cifar10"
#: What a foreign checkpoint's name ends with.
_CHECKPOINT_SUFFIXES = (".th", ".pth", ".pt", ".tar")


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` as ``STEM.safetensors`` + ``STEM.json`` and return the weights path.

    ``path`` is the stem, either file (the suffix is dropped), or an existing directory (then
    ``model.safetensors``/``model.json`` in it). The model must come from
    :func:`veilnet.models.create` (or :func:`load`), which records its architecture.
    ``input_shape`` (``C, H, W``) records the images the model takes, ``classes`` the name of each
    output class. Existing files are
    kept unless ``force`` (checked with :func:`veilnet.paths.prepare_output`, like every output).
    """
    arch = getattr(model, "veilnet_arch", None)
    if not isinstance(arch, dict):
        raise ModelFormatError(f"cannot save a {type(model).__name__} that was not built by veilnet.models.create (no architecture record)")
    weights, card_path = prepare_save(path, force=force)
    card: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": arch["name"],
        "kwargs": arch["kwargs"],
        "data": data,
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    if input_shape is not None:
        card["input_shape"] = [int(v) for v in input_shape]
    if classes is not None:
        card["classes"] = [str(name) for name in classes]
    try:
        json.dumps(card)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data, metrics and extra of a model card must be JSON values: {exc}") from None
    tensors = {name: t.detach().to("cpu").clone().contiguous() for name, t in model.state_dict().items()}
    blob = save_tensors(tensors, metadata={"format": FORMAT, "architecture": arch["name"]})
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    # The card goes into place inside the weights' write: a failure on either keeps the old weights.
    with atomic_write(weights) as fh:
        fh.write(blob)
        write_text(card_path, json.dumps(card, indent=2) + "\n")
    return weights


def prepare_save(path: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path]:
    """The weights and card files :func:`save` writes for ``path``, checked with :func:`veilnet.paths.prepare_output` before any work."""
    weights, card_path = output_paths(path)
    prepare_output(weights.parent, force=force, exists=(weights.name, card_path.name))
    return weights, card_path


def card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of a saved model (``path`` as for :func:`load`), checked for format and version."""
    return _read_card(output_paths(path)[1], given=path)


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save`; returns it in eval mode with ``model.veilnet_card``.

    ``path`` may be the ``.safetensors``, the ``.json``, their common stem, or a directory holding
    ``model.safetensors`` and ``model.json``. Raises :class:`ModelFormatError` naming the file for
    a missing or corrupt file, an unknown architecture, weights whose SHA-256 differs from the
    card's, or weights that do not fit the architecture.
    """
    weights, card_path = output_paths(path)
    info = _read_card(card_path, given=path)
    if not weights.is_file():
        raise ModelFormatError(f"{weights}: weights file missing (card {card_path.name} expects it beside it)")
    digest = _sha256(weights)
    if digest != info["sha256"]:
        raise ModelFormatError(
            f"{weights}: SHA-256 {digest[:12]}… differs from the card's {str(info['sha256'])[:12]}… (file replaced, truncated or tampered with)"
        )
    try:
        model = create(info["architecture"], **info["kwargs"])
    except VeilnetError as exc:
        raise ModelFormatError(f"{card_path}: {exc}") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{weights}: not a readable safetensors file ({exc})") from None
    load_strict(model, state, weights)
    model.veilnet_card = info
    return model.to(device).eval()


def load_strict(model: nn.Module, state: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """``model.load_state_dict(state, strict=True)`` with a one-line :class:`ModelFormatError`
    naming ``source`` and the missing, unexpected or mis-shaped tensors when they do not fit."""
    expected = model.state_dict()
    problems = []
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if k not in not_tensors and state[k].shape != expected[k].shape
    )
    for label, items in (("not tensors", not_tensors), ("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", shapes)):
        if items:
            problems.append(f"{label}: {', '.join(items[:4])}{f' (+{len(items) - 4} more)' if len(items) > 4 else ''}")
    if problems:
        raise ModelFormatError(f"{source}: weights do not fit {type(model).__name__}; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_cifar_resnet(path: str | os.PathLike[str], depth: int | None = None) -> nn.Module:
    """A pretrained akamaster CIFAR ResNet (``{'best_prec1': float, 'state_dict': {'module.…'}}``).

    Read with ``torch.load(path, map_location="cpu", weights_only=True)``, so a checkpoint holding
    arbitrary Python objects is refused rather than executed. ``depth`` is inferred from the number
    of blocks per stage (n → 6n+2) when None. The model's ``normalize`` is ImageNet's mean/std,
    as in training. Returns the model in eval mode; ``model.veilnet_card`` holds the source path,
    its SHA-256 and ``metrics: {"best_prec1": ...}``. A checkpoint that does not fit is a :class:`ModelFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: checkpoint file missing ({_looked_for(path)}{CIFAR_RESNET_SOURCE}, e.g. resnet20-12fca82f.th)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a safe checkpoint"
        raise ModelFormatError(f"{path}: not a safe torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(checkpoint, dict):
        raise ModelFormatError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise ModelFormatError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict")
    if not all(isinstance(k, str) for k in state):
        raise ModelFormatError(f"{path}: state_dict keys must be parameter names (strings)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    blocks = {k.split(".")[1] for k in state if k.startswith("layer1.") and k.count(".") >= 2}
    if not blocks:
        raise ModelFormatError(f"{path}: not a CIFAR ResNet checkpoint (its state_dict has no 'layer1.N.…' weights)")
    inferred = 6 * len(blocks) + 2
    if depth is None:
        depth = inferred
    elif depth != inferred:
        raise ModelFormatError(f"{path}: checkpoint has {len(blocks)} blocks per stage (ResNet-{inferred}), not ResNet-{depth}")
    if depth not in DEPTHS:
        raise ModelFormatError(f"{path}: checkpoint looks like ResNet-{depth}; expected one of {', '.join(f'ResNet-{d}' for d in DEPTHS)}")
    model = create(f"resnet{depth}")
    own = model.state_dict()
    # The checkpoint predates our Normalize buffers and BN's num_batches_tracked: take ours for those.
    state.update({k: own[k] for k in own if k not in state and (k.startswith("normalize.") or k.endswith(".num_batches_tracked"))})
    load_strict(model, state, path)
    best = checkpoint.get("best_prec1")
    metrics = {"best_prec1": float(best)} if isinstance(best, (int, float, torch.Tensor)) else {}
    model.veilnet_card = {"source": str(path), "source_sha256": _sha256(path), "architecture": f"resnet{depth}", "metrics": metrics}
    return model.eval()


def output_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The weights and card files of ``path`` (a stem, either file, or a folder) for :func:`save` and :func:`load`."""
    p = Path(path)
    if p.is_dir():
        p = p / DIR_STEM
    elif p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _looked_for(path: Path) -> str:
    """``"looked for /abs/path; "`` for a relative ``path`` (taken from the working folder), else ``""``."""
    return "" if path.is_absolute() else f"looked for {path.absolute()}; "


def _missing_card(card_path: Path, given: str | os.PathLike[str] | None) -> str:
    """The one line for a model whose card is not there: the path tried, what a model is, and
    for a foreign checkpoint or a CIFAR ResNet, where such checkpoints come from and how to convert one."""
    name = Path(given if given is not None else card_path).name.lower()
    hint = ""
    if name.endswith(_CHECKPOINT_SUFFIXES) or "resnet" in name:
        hint = f"; {CIFAR_RESNET_SOURCE}, converted once with `veilnet models import-cifar-resnet FILE.th -o DIR`"
    return (
        f"{card_path}: model card missing ({_looked_for(card_path)}a veilnet model is a .json card beside its .safetensors weights, "
        f"as `veilnet train` writes them{hint})"
    )


def _read_card(card_path: Path, *, given: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    try:
        info = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelFormatError(_missing_card(card_path, given)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{card_path}: corrupt model card ({exc})") from None
    except RecursionError:
        raise ModelFormatError(f"{card_path}: corrupt model card (nested too deeply to read)") from None
    if not isinstance(info, dict):
        raise ModelFormatError(f"{card_path}: not a veilnet model card (a JSON object), but a JSON {type(info).__name__}")
    if info.get("format") != FORMAT:
        raise ModelFormatError(f"{card_path}: not a veilnet model card (format must be {FORMAT!r})")
    if info.get("version") != VERSION:
        raise ModelFormatError(f"{card_path}: card version {info.get('version')!r} unsupported (this veilnet reads version {VERSION})")
    for field, kind in (("architecture", str), ("kwargs", dict), ("sha256", str)):
        if not isinstance(info.get(field), kind):
            raise ModelFormatError(f"{card_path}: card field {field!r} missing or not a {kind.__name__}")
    shape = info.get("input_shape")
    if shape is not None and not (is_int_list(shape, minimum=1) and len(shape) == 3):
        raise ModelFormatError(f"{card_path}: card field 'input_shape' must be three positive integers [C, H, W], got {shape!r}")
    names = info.get("classes")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelFormatError(f"{card_path}: card field 'classes' must be a list of class names (strings)")
    return info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["card", "load", "load_cifar_resnet", "load_strict", "save"]
