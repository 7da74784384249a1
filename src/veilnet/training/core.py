"""The training core: :func:`fit` runs any step function over epochs.

``fit`` knows nothing about classifiers. Each epoch it asks ``batches(epoch)`` for the epoch's
batches and calls ``step(batch, info)`` on each; the step does its own forward passes, losses
and optimiser updates (one model and one optimiser for a classifier; a generator and a
discriminator with two optimisers updated in turn for a GAN) and returns its scalar metrics.
``fit`` draws one progress bar over the run's steps (:func:`veilnet.progress.bar`), averages the step metrics over the epoch, adds what
``evaluate(epoch)`` returns, and — when it has an output folder — writes a checkpoint and
appends the epoch's record to ``metrics.json``.

Exact resume: the checkpoint holds the ``state_dict()`` of every named object of ``state``
(models, optimisers, learning-rate schedulers, any object with ``state_dict``/``load_state_dict``)
and the state of every named :class:`torch.Generator`, plus torch's global CPU RNG state and,
on a machine with CUDA, every CUDA device's RNG state. ``resume=True`` restores all of it and
continues with the next epoch, so an interrupted run reaches bit for bit the weights of an
uninterrupted one — provided the step draws its randomness only from those generators and
torch's global RNG (not from Python's ``random`` or NumPy), and ``batches`` makes the epoch's
batches from that state alone. Checkpoints are read with ``torch.load(..., weights_only=True,
map_location="cpu")`` (:func:`torch.set_rng_state` takes a CPU ``ByteTensor``;
``load_state_dict`` moves each tensor to its parameter's device) and written atomically.

Several processes (``torchrun``, :mod:`veilnet.distributed`): ``fit`` runs the same ``step`` on
every rank — the step itself takes its rank's part of each batch and its model is under
DistributedDataParallel — and only rank 0 reads and writes the output folder and draws the bar.
Each epoch's metrics are averaged over every rank's steps, weighted by their ``n``. The
checkpoint holds every rank's global RNG state (each rank draws its own stream) and the number of
processes: a resume continues exactly under the same number and is refused under another.

Example (a GAN: two models, two optimisers, alternating updates)::

    def gan_step(real, info):
        z = torch.randn(len(real), latent, generator=noise)
        d_loss = bce(disc(real), ones) + bce(disc(gen(z).detach()), zeros)
        opt_d.zero_grad(); d_loss.backward(); opt_d.step()
        g_loss = bce(disc(gen(z)), ones)
        opt_g.zero_grad(); g_loss.backward(); opt_g.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "n": len(real)}

    def batches(epoch):  # the real images, shuffled by the generator ``order``
        return images[torch.randperm(len(images), generator=order)].split(64)

    history = fit(gan_step, batches, epochs=20,
                  state={"gen": gen, "disc": disc, "opt_g": opt_g, "opt_d": opt_d,
                         "noise": noise, "order": order},
                  out_dir="runs/gan", config={"latent": latent, "lr": 2e-4}, resume=resume)
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from veilnet import distributed
from veilnet.checks import check_int
from veilnet.errors import ConfigError, ModelFormatError, OutputExistsError, VeilnetError
from veilnet.paths import prepare_output, write_bytes, write_text
from veilnet.progress import bar, message

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
#: The key of a step's metrics that weighs its values in the epoch average (not recorded).
WEIGHT = "n"
#: Version of the checkpoint layout written by :func:`fit`.
CHECKPOINT_VERSION = 2


@runtime_checkable
class Stateful(Protocol):
    """Anything whose state a checkpoint can hold: modules, optimisers, schedulers, scalers."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], /) -> Any: ...


@dataclass(frozen=True)
class StepInfo:
    """Where a step is: ``epoch`` and ``index`` (of the batch in the epoch) are 0-based;
    ``global_step`` counts every step since the run started, resumed epochs included."""

    epoch: int
    index: int
    global_step: int


#: ``step(batch, info) -> metrics``: one optimisation step; ``metrics`` maps names to numbers.
Step = Callable[[Any, StepInfo], Mapping[str, float]]


def fit(
    step: Step,
    batches: Callable[[int], Iterable[Any]],
    *,
    epochs: int,
    state: Mapping[str, Stateful | torch.Generator],
    out_dir: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
    evaluate: Callable[[int], Mapping[str, Any]] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    desc: str = "training",
) -> list[dict[str, Any]]:
    """Run ``step`` over ``epochs`` epochs; return the history (one record per epoch).

    Arguments:
        step: called as ``step(batch, info)`` for each batch (:class:`StepInfo`); returns the
            step's metrics, e.g. ``{"train_loss": 0.3, "n": 64}``. Each metric's epoch value is
            its mean over the epoch's steps, weighted by ``metrics["n"]`` (default 1).
        batches: ``batches(epoch)`` (0-based) -> the epoch's batches; when the iterable has a
            ``len`` the progress bar shows it. Shuffling must draw from a generator in ``state``.
        epochs: the total number of epochs (a resumed run continues up to it).
        state: everything a resume must restore, by name: objects with ``state_dict`` /
            ``load_state_dict`` (models, optimisers, schedulers, ...) and ``torch.Generator``s.
        out_dir: folder for ``checkpoint.pt`` (after every epoch) and ``metrics.json``; None
            trains in memory (no files, no resume).
        config: JSON values that identify the run (hyper-parameters, architecture); a checkpoint
            written with another ``config`` is refused on resume.
        resume: continue from ``out_dir/checkpoint.pt``; without it an existing checkpoint in
            ``out_dir`` is an error unless ``force``.
        evaluate: ``evaluate(epoch)`` after each epoch's steps; its values join the record
            (before the checkpoint, so randomness it draws is replayed on resume too).
        on_epoch_end: called with each record after it is saved.
        progress: draw one bar over every step of the run, named ``desc`` and the epoch (its
            total, and so its estimate of the time left, counts each remaining epoch as long as
            the current one, when ``batches(epoch)`` has a ``len``), and print one line per epoch.

    A record is ``{"epoch": 1-based, **averaged step metrics, "seconds": ..., **evaluate(epoch)}``.
    Raises :class:`ConfigError` (nothing to resume, other config or other state names),
    :class:`ModelFormatError` (a corrupt, truncated or foreign checkpoint) and
    :class:`OutputExistsError`, all before the first step.
    """
    check_int("epochs", epochs, minimum=1)
    for name, obj in state.items():
        if not isinstance(obj, (torch.Generator, Stateful)):
            raise ConfigError(f"state {name!r} is a {type(obj).__name__}: expected a torch.Generator or an object with state_dict/load_state_dict")
    run_config = _json_config(config)
    out = None if out_dir is None else Path(out_dir)
    main = distributed.is_main()
    history: list[dict[str, Any]] = []
    start_epoch, global_step = 0, 0
    if out is None:
        if resume:
            raise ConfigError("resume needs an output folder holding a checkpoint")
    else:
        prepare_run(out, resume=resume, force=force)
        if resume:
            saved = distributed.from_main(lambda: load_checkpoint(out / CHECKPOINT))
            start_epoch, global_step, history = restore(saved, state, run_config, out / CHECKPOINT)

    shown_here = progress and main
    with bar(desc=desc, unit="step", enabled=shown_here) as shown:
        for epoch in range(start_epoch, epochs):
            tic = time.perf_counter()
            epoch_batches = batches(epoch)
            sums: dict[str, float] = {}
            weights: dict[str, float] = {}
            if hasattr(epoch_batches, "__len__"):
                shown.total = shown.n + len(epoch_batches) * (epochs - epoch)
            shown.set_description(f"{desc}, epoch {epoch + 1}/{epochs}")
            for index, batch in enumerate(epoch_batches):
                metrics = dict(step(batch, StepInfo(epoch=epoch, index=index, global_step=global_step)))
                global_step += 1
                weight = float(metrics.pop(WEIGHT, 1))
                for name, value in metrics.items():
                    sums[name] = sums.get(name, 0.0) + weight * float(value)
                    weights[name] = weights.get(name, 0.0) + weight
                shown.update()
                if shown_here:
                    shown.set_postfix({name: f"{float(value):.3g}" for name, value in metrics.items()})
            names = sorted(sums)
            totals = distributed.all_sum([sums[name] for name in names] + [weights[name] for name in names])
            sums, weights = dict(zip(names, totals[: len(names)])), dict(zip(names, totals[len(names) :]))
            record: dict[str, Any] = {"epoch": epoch + 1}
            record.update({name: sums[name] / weights[name] if weights[name] else math.nan for name in sums})
            record["seconds"] = time.perf_counter() - tic
            if evaluate is not None:
                record.update(evaluate(epoch))
            history.append(record)
            if out is not None:
                # Checkpoint first, then metrics: a crash between the two only repeats nothing.
                save_checkpoint(out / CHECKPOINT, state, epoch=epoch + 1, global_step=global_step, history=history, config=run_config)
                if main:
                    write_text(out / METRICS, json.dumps([{k: _json_number(v) for k, v in r.items()} for r in history], indent=1) + "\n")
            if shown_here:
                message(f"{desc}, epoch {epoch + 1}/{epochs}: " + ", ".join(_fmt(k, v) for k, v in record.items() if k != "epoch"))
            if on_epoch_end is not None:
                on_epoch_end(record)
    return history


def prepare_run(out_dir: str | os.PathLike[str], *, resume: bool, force: bool, exists: Sequence[str] = (CHECKPOINT,), mkdir: bool = True) -> Path:
    """Check ``out_dir`` for a run before any work: with ``resume`` it must hold a checkpoint;
    without, none of ``exists`` may be there unless ``force``; it must be a folder that can be
    written (:func:`veilnet.paths.prepare_output`). Creates it when ``mkdir``. Under several
    processes rank 0 alone checks it, and every rank raises its error."""
    return distributed.from_main(lambda: _prepare_run(Path(out_dir), resume=resume, force=force, exists=exists, mkdir=mkdir))


def _prepare_run(out: Path, *, resume: bool, force: bool, exists: Sequence[str], mkdir: bool) -> Path:
    try:
        prepare_output(out, force=force or resume, exists=exists, mkdir=mkdir)
    except OutputExistsError:
        raise OutputExistsError(f"{out} already holds a training run; pass --resume to continue it or --force to start over") from None
    if resume and not (out / CHECKPOINT).is_file():
        raise ConfigError(f"nothing to resume: {out / CHECKPOINT} does not exist")
    return out


def save_checkpoint(
    path: Path, state: Mapping[str, Stateful | torch.Generator], *, epoch: int, global_step: int, history: list[dict[str, Any]], config: dict[str, Any]
) -> None:
    """Write the checkpoint :func:`fit` resumes from, atomically (:func:`veilnet.paths.write_bytes`).

    Collective under several processes: every rank hands over its RNG states, rank 0 writes."""
    ranks = distributed.gather(_rng_states())
    if not distributed.is_main():
        return
    checkpoint = {
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "global_step": global_step,
        "config": config,
        "history": history,
        "state": {name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict() for name, obj in state.items()},
        "generators": sorted(name for name, obj in state.items() if isinstance(obj, torch.Generator)),
        **ranks[0],
        "world_size": len(ranks),
        "other_ranks": ranks[1:],
    }
    buffer = io.BytesIO()  # torch.save into a real file would turn a full disk into a RuntimeError
    torch.save(checkpoint, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on the CPU)."""
    if not path.is_file():
        raise ConfigError(f"nothing to resume: {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zips, foreign pickles and I/O errors come in many types
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelFormatError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {reason[:160]}); pass --force to start over") from None
    fields = {
        "version": int,
        "epoch": int,
        "global_step": int,
        "config": dict,
        "history": list,
        "state": dict,
        "generators": list,
        "torch_rng": torch.Tensor,
        "cuda_rng": list,
    }
    if not isinstance(checkpoint, dict) or any(not isinstance(checkpoint.get(k), t) for k, t in fields.items()):
        raise ModelFormatError(f"{path}: not a veilnet training checkpoint (version {CHECKPOINT_VERSION}); pass --force to start over")
    if checkpoint["version"] != CHECKPOINT_VERSION:
        raise ModelFormatError(f"{path}: checkpoint version {checkpoint['version']} unsupported (this veilnet reads version {CHECKPOINT_VERSION})")
    # Written before several processes were possible: one process.
    checkpoint.setdefault("world_size", 1)
    checkpoint.setdefault("other_ranks", [])
    if (
        not isinstance(checkpoint["world_size"], int)
        or not isinstance(checkpoint["other_ranks"], list)
        or len(checkpoint["other_ranks"]) != checkpoint["world_size"] - 1
    ):
        raise ModelFormatError(f"{path}: not a veilnet training checkpoint (version {CHECKPOINT_VERSION}); pass --force to start over")
    return checkpoint


def restore(
    checkpoint: dict[str, Any], state: Mapping[str, Stateful | torch.Generator], config: dict[str, Any], source: Path
) -> tuple[int, int, list[dict[str, Any]]]:
    """Load ``checkpoint`` into ``state`` and the global RNGs; return (epoch, global step, history)."""
    if checkpoint["config"] != config:
        changed = sorted(k for k in set(config) | set(checkpoint["config"]) if config.get(k) != checkpoint["config"].get(k))
        raise ConfigError(f"{source} was written with another training configuration ({', '.join(changed)} differ); resume with the same options")
    world = distributed.current()
    if checkpoint["world_size"] != world.size:
        raise ConfigError(
            f"{source} was written by {_processes(checkpoint['world_size'])} and this run has {_processes(world.size)}; "
            "resume it with the same number (torchrun --nnodes x --nproc-per-node)"
        )
    if set(checkpoint["state"]) != set(state):
        raise ConfigError(f"{source} holds the state of {', '.join(sorted(checkpoint['state']))}, not of {', '.join(sorted(state))}")
    for name, obj in state.items():
        saved = checkpoint["state"][name]
        try:
            if isinstance(obj, torch.Generator):
                obj.set_state(saved)
            elif isinstance(obj, torch.nn.Module):
                from veilnet.models import load_strict

                load_strict(obj, saved, f"{source} ({name})")
            else:
                obj.load_state_dict(saved)
        except VeilnetError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise ModelFormatError(f"{source}: the saved state of {name!r} does not fit ({str(exc).splitlines()[0][:160]})") from None
    mine = checkpoint if world.main else checkpoint["other_ranks"][world.rank - 1]
    torch.set_rng_state(mine["torch_rng"])
    cuda = mine["cuda_rng"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    epoch = checkpoint["epoch"]
    return epoch, checkpoint["global_step"], list(checkpoint["history"])[:epoch]


def _rng_states() -> dict[str, Any]:
    """This process's global RNG states: torch's CPU generator and every CUDA device's."""
    return {"torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def _json_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    # Round-trip through JSON so the comparison on resume sees what the checkpoint holds.
    try:
        return json.loads(json.dumps(dict(config or {})))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a run's config must be JSON values: {exc}") from None


def _json_number(value: Any) -> Any:
    """NaN and infinity as JSON null (JSON has no NaN), as in :mod:`veilnet.report`."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _fmt(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name} {value:.1f} s" if name == "seconds" else f"{name} {value:.4f}"
    return f"{name} {value}"


__all__ = ["CHECKPOINT", "METRICS", "Stateful", "Step", "StepInfo", "fit", "load_checkpoint", "prepare_run"]
