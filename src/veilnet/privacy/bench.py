"""The privacy benchmark's run: every chosen defence at every setting of its knob, trained for the
same task, timed the same way and attacked by the same attacker on the same victim images.

Images (balanced over the classes, :func:`veilnet.data.balanced_head`): the task's training images
and the attacker's own images are the first ``train_images`` and ``attacker_images`` of the data's
``train`` split (the attacker owns public images of the same kind); the accuracy is measured on the
first ``test_images`` of the ``test`` split and the victims are the first ``victim_images`` of those.
Labels are the reduced task's (:mod:`veilnet.privacy.task`).

Per row (:func:`run_row`): build → fit → **accuracy** of ``receive(serve(send(I)))`` on the test
images (the victim's secrets drawn from ``seed + 1``) → **time per image**: the median over
:data:`TIMING_PASSES` passes (after a warm-up) on ``timing_images`` images, one batch, of the device's part (send + receive) and the
server's (serve), in milliseconds, one thread as torch has it → the **attacks**, each scored by
PSNR, SSIM and the per-image RMS error (:func:`veilnet.attacks.inversion.reconstruction_metrics`)
beside the attacker's mean image:

* ``learned inverter`` — the U-Net of Xiang et al. (ICLR 2020), section 5.1, trained for
  ``attack_epochs`` on ``(observe(I_a), I_a)`` over the attacker's images, redrawn every batch from
  the attacker's generator (``seed + 2``), then applied to what the victim sent;
* ``optimisation inversion`` — ``argmin_Î ‖g(Î) − s‖²/‖s‖² + λ_TV·TV(Î)`` through the row's released
  encoder g, ``optimisation_steps`` Adam steps from the attacker's mean image (rows with an encoder);
* the row's own attacks (:meth:`~veilnet.privacy.defences.Row.attacks`);

and **property inference** of the hidden attribute from the same features: a classifier and the
5-nearest-neighbour vote (Xiang et al., section 4.3, inference attacks 2 and 4) trained on
``observe(I_a)`` of the attacker's images, beside :meth:`PrivacyTask.chance`. A row's *worst case*
is its strongest attack: the highest SSIM, the highest PSNR, the lowest error, the best property
accuracy.

Resumable: with an output folder each finished row is written to ``rows/LABEL.json`` at once
(atomically); ``resume=True`` keeps them and runs only the rows missing — a row that raised is
recorded in ``failed`` and run again on the next resume. The folder's ``run.json`` holds the data,
the task and the budget; resuming with others is refused.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from veilnet import plugins
from veilnet.attacks import inversion as inv
from veilnet.attacks import property as prop
from veilnet.attacks.inversion import InversionResult
from veilnet.attacks.property import PropertyResult
from veilnet.data import ImageSplit, balanced_head, load
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError, OutputExistsError
from veilnet.paths import prepare_output, write_text
from veilnet.privacy.defences import AttackContext, Budget, Defence, Row, Setup
from veilnet.privacy.task import PrivacyTask, privacy_task
from veilnet.report import Result

#: Seed offsets: the victim's secret draws, the attacker's own draws.
VICTIM, ATTACKER = 1, 2
#: How many passes the timing takes the median of.
TIMING_PASSES = 5


@dataclass(frozen=True)
class RowResult(Result):
    """One row: the defence, its knob value, what the server sees; accuracy on the task over
    ``n_test`` images; the device's and the server's milliseconds per image; the training's figures;
    every reconstruction attack and property attack; the hidden attribute's chance level given the
    task's label; wall seconds per stage (the training's under ``"train"``)."""

    defence: str
    method: str
    label: str
    knob: str
    value: float | None
    sends: str
    reference_row: bool
    accuracy: float
    n_test: int
    device_ms: float
    server_ms: float
    fit: dict[str, float] = field(default_factory=dict)
    inversion: list[InversionResult] = field(default_factory=list)
    properties: list[PropertyResult] = field(default_factory=list)
    property_chance: float = math.nan
    seconds: dict[str, float] = field(default_factory=dict)

    def worst(self, metric: str = "ssim") -> InversionResult | None:
        """The strongest reconstruction attack by ``metric``: ``ssim`` or ``psnr`` (highest) or ``error`` (lowest)."""
        if not self.inversion:
            return None
        if metric == "error":
            return min(self.inversion, key=lambda r: r.metrics.error)
        return max(self.inversion, key=lambda r: _finite_or_inf(getattr(r.metrics, metric)))

    @property
    def value_name(self) -> str:
        """The knob value as the label shows it (a name where it stands for a choice)."""
        return self.label.rpartition("=")[2] if self.value is not None else ""

    def best_property(self) -> PropertyResult | None:
        """The property attack with the highest accuracy on the hidden attribute."""
        return min(self.properties, key=lambda r: r.error) if self.properties else None


def _finite_or_inf(value: float) -> float:
    """A metric read back from JSON: a PSNR of an exact reconstruction is +inf, which JSON holds as
    null and reads back as NaN (:mod:`veilnet.report`); SSIM and PSNR are never NaN otherwise."""
    return math.inf if math.isnan(value) else value


@dataclass(frozen=True)
class PrivacyReport(Result):
    """A whole run: the data, the task, the budget, the image sets, every finished row (in the
    order run) and the rows that failed (label → the error's one line)."""

    data: str
    task: PrivacyTask
    budget: Budget
    train: str
    attacker: str
    victim: str
    rows: list[RowResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def reference(self) -> RowResult | None:
        """The unprotected network's row, if it ran."""
        return next((r for r in self.rows if r.reference_row), None)


@dataclass
class Images:
    """The run's images: the task's training split, the attacker's own, the test and the victim
    images (all with the task's labels) and the victims' and attacker's hidden labels."""

    train: ImageSplit
    attacker: ImageSplit
    test: ImageSplit
    victim: ImageSplit
    attacker_hidden: torch.Tensor
    victim_hidden: torch.Tensor
    chance: float


def _name(split: ImageSplit) -> str:
    return f"{split.spec}:{split.split}[:{len(split)}]"


def load_images(data: str, budget: Budget, task: PrivacyTask | None = None) -> tuple[PrivacyTask, Images]:
    """The run's task and images from data spec ``data`` (see the module docstring)."""
    train_split, test_split = load(data, "train"), load(data, "test")
    task = task or privacy_task(train_split.classes)
    for what, n, split in (
        ("train", budget.train_images, train_split),
        ("attacker", budget.attacker_images, train_split),
        ("test", budget.test_images, test_split),
    ):
        if n > len(split):
            raise ConfigError(f"{what}-images is {n} but {data} has {len(split)} {split.split} images")
    attacker = balanced_head(train_split, budget.attacker_images)
    test = balanced_head(test_split, budget.test_images)
    victim = balanced_head(test, budget.victim_images)
    images = Images(
        train=task.apply(balanced_head(train_split, budget.train_images)),
        attacker=task.apply(attacker),
        test=task.apply(test),
        victim=task.apply(victim),
        attacker_hidden=task.hidden_labels(attacker.labels),
        victim_hidden=task.hidden_labels(victim.labels),
        chance=task.chance(victim.labels),
    )
    return task, images


@torch.no_grad()
def _logits(row: Row, images: torch.Tensor, generator: torch.Generator, batch_size: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, images.shape[0], batch_size):
        sent, state = row.send(images[i : i + batch_size], generator)
        out.append(row.receive(row.serve(sent), state))
    return torch.cat(out)


@torch.no_grad()
def _sent(fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], images: torch.Tensor, generator: torch.Generator, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([fn(images[i : i + batch_size], generator) for i in range(0, images.shape[0], batch_size)])


@torch.no_grad()
def time_row(row: Row, images: torch.Tensor, seed: int) -> tuple[float, float]:
    """Milliseconds per image of the device's part (send + receive) and of the server's (serve):
    the median of :data:`TIMING_PASSES` passes over ``images`` as one batch, after one warm-up pass."""
    device, server = [], []
    for n in range(TIMING_PASSES + 1):
        generator = torch.Generator().manual_seed(seed + n)
        t0 = time.perf_counter()
        sent, state = row.send(images, generator)
        t1 = time.perf_counter()
        answer = row.serve(sent)
        t2 = time.perf_counter()
        row.receive(answer, state)
        t3 = time.perf_counter()
        if n:
            device.append((t1 - t0) + (t3 - t2))
            server.append(t2 - t1)
    per = 1000.0 / images.shape[0]
    return statistics.median(device) * per, statistics.median(server) * per


def run_row(defence: Defence, value: float | None, images: Images, setup: Setup) -> RowResult:
    """Build, train, measure and attack one row (see the module docstring)."""
    budget, dev = setup.budget, setup.device
    seconds: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start

    row = defence.build(value, setup)
    fit = timed("train", lambda: row.fit(images.train)) or {}
    row.eval()
    gen = torch.Generator().manual_seed
    test_images = images.test.float_images().to(dev)
    logits = timed("accuracy", lambda: _logits(row, test_images, gen(budget.seed + VICTIM)))
    accuracy = float((logits.argmax(1).cpu() == images.test.labels).double().mean())
    timing = test_images[: budget.timing_images]
    device_ms, server_ms = timed("timing", lambda: time_row(row, timing, budget.seed))

    own, victims = images.attacker.float_images(), images.victim.float_images()
    sent = _sent(lambda x, g: row.send(x, g)[0], victims.to(dev), gen(budget.seed + VICTIM)).cpu()
    attacker_gen = gen(budget.seed + ATTACKER)

    def score(
        attack: str, described: str, reconstructed: torch.Tensor, extra: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None
    ) -> InversionResult:
        return inv.evaluate_reconstruction(
            attack,
            described,
            reconstructed.cpu(),
            victims,
            own,
            attacker_split=_name(images.attacker),
            victim_split=_name(images.victim),
            seed=budget.seed,
            victim_seed=budget.seed + VICTIM,
            config=config or {},
            extra=extra,
        )

    inverter_config = inv.InversionConfig(epochs=budget.attack_epochs, batch_size=budget.batch_size, base_width=budget.unet_width, seed=budget.seed)
    inverter = timed(
        "learned inverter",
        lambda: inv.train_inverter(
            lambda x: row.observe(x, attacker_gen),
            own,
            **inverter_config.to_dict(),
            device=dev,
            progress=setup.progress,
            desc=f"inverter: {defence.label(value)}",
        ),
    )
    results = [
        score(
            "learned inverter", f"U-Net on {row.sends or 'what the server sees'}", inv.reconstruct(inverter, sent, device=dev), config=inverter_config.to_dict()
        )
    ]
    if row.encoder is not None and budget.optimisation_steps:
        results.append(timed("optimisation inversion", lambda: _optimisation(row.encoder, sent, own, budget, dev, score)))
    context = AttackContext(images.attacker, images.victim, sent, budget, dev, score, setup.progress)
    results += timed("own attacks", lambda: row.attacks(context))
    properties = timed("property", lambda: _properties(row, own, sent, images, budget, dev))
    return RowResult(
        defence=defence.name,
        method=defence.method,
        label=defence.label(value),
        knob=defence.knob,
        value=value,
        sends=row.sends,
        reference_row=defence.reference_row,
        accuracy=accuracy,
        n_test=len(images.test),
        device_ms=device_ms,
        server_ms=server_ms,
        fit={k: float(v) for k, v in fit.items()},
        inversion=results,
        properties=properties,
        property_chance=images.chance,
        seconds=seconds,
    )


def _optimisation(
    encoder: torch.nn.Module, sent: torch.Tensor, own: torch.Tensor, budget: Budget, dev: torch.device, score: Callable[..., InversionResult]
) -> InversionResult:
    encoder = encoder.to(dev).eval()
    rec, distance = inv.optimisation_inversion(
        encoder, sent.to(dev), tuple(own.shape[1:]), steps=budget.optimisation_steps, init=own.mean(0, keepdim=True), seed=budget.seed, device=dev
    )
    return score(
        "optimisation inversion",
        "argmin ‖g(Î) − s‖²/‖s‖² + λ_TV·TV(Î) through the released encoder",
        rec,
        extra={"feature_distance": float(distance.mean())},
        config={"steps": budget.optimisation_steps},
    )


def _properties(row: Row, own: torch.Tensor, sent: torch.Tensor, images: Images, budget: Budget, dev: torch.device) -> list[PropertyResult]:
    features = _sent(row.observe, own.to(dev), torch.Generator().manual_seed(budget.seed + ATTACKER + 1)).cpu()
    train, test = inv.as_unet_input(features), inv.as_unet_input(sent)
    names = {"attacker_split": _name(images.attacker), "victim_split": _name(images.victim), "seed": budget.seed}
    num_classes = int(max(images.attacker_hidden.max(), images.victim_hidden.max())) + 1
    classifier, _ = prop.classifier_attack(
        "classifier",
        row.sends or "what the server sees",
        train,
        images.attacker_hidden,
        test,
        images.victim_hidden,
        num_classes=num_classes,
        epochs=budget.attack_epochs,
        batch_size=budget.batch_size,
        device=dev,
        **names,
    )
    knn = prop.knn_attack(
        "nearest neighbours", row.sends or "what the server sees", train, images.attacker_hidden, test, images.victim_hidden, ks=(5,), device=dev, **names
    )
    return [classifier, *knn]


def slug(label: str) -> str:
    """A row's file name stem: its label with anything but letters, digits, ``.``, ``=`` and ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_")


def plan(defences: Mapping[str, Sequence[float] | None] | None = None) -> list[tuple[Defence, float | None]]:
    """The rows to run: each chosen defence (None: every registered one) at each of its settings."""
    chosen = plugins.load_defences(list(defences) if defences is not None else None)
    if not chosen:
        raise ConfigError("no defence to run: no installed method registers one (veilnet bench privacy --list)")
    return [(d, v) for name, d in chosen.items() for v in d.settings((defences or {}).get(name))]


def run(
    data: str,
    *,
    defences: Mapping[str, Sequence[float] | None] | None = None,
    budget: Budget | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrivacyReport:
    """Run the benchmark (see the module docstring): the rows of :func:`plan` on data spec ``data``.
    With ``out_dir`` every finished row is saved as it ends and the report as ``report.json``;
    ``log`` receives one line as each row starts and ends."""
    budget = budget or Budget()
    rows = plan(defences)
    out = _check_output(out_dir, resume=resume, force=force) if out_dir is not None else None
    task, images = load_images(data, budget)
    if out is not None:
        _start(out, {"data": data, "task": task.to_dict(), "budget": budget.to_dict()}, resume=resume)
    setup = Setup(budget, images.train.image_shape, len(task.task_classes), resolve_device(device), progress)
    done: dict[str, RowResult] = {}
    failed: dict[str, str] = {}
    for i, (defence, value) in enumerate(rows, 1):
        label = defence.label(value)
        path = out / "rows" / f"{slug(label)}.json" if out is not None else None
        if path is not None and resume and path.is_file():
            done[label] = RowResult.load(path)
            _say(log, f"[{i}/{len(rows)}] {label}: kept from {path}")
            continue
        _say(log, f"[{i}/{len(rows)}] {label}: training and attacking")
        try:
            result = run_row(defence, value, images, setup)
        except Exception as exc:  # noqa: BLE001 — a failed row is recorded and run again on resume
            failed[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _say(log, f"[{i}/{len(rows)}] {label}: failed ({failed[label]}); --resume runs it again")
            continue
        done[label] = result
        if path is not None:
            result.save(path)
        worst, spent = result.worst("ssim"), sum(result.seconds.values())
        _say(log, f"[{i}/{len(rows)}] {label}: accuracy {result.accuracy:.3f}, worst SSIM {worst.metrics.ssim:.3f} ({worst.attack}) in {spent:.0f} s")
    report = PrivacyReport(
        data=data,
        task=task,
        budget=budget,
        train=_name(images.train),
        attacker=_name(images.attacker),
        victim=_name(images.victim),
        rows=list(done.values()),
        failed=failed,
    )
    if out is not None:
        report.save(out / "report.json")
    return report


def _say(log: Callable[[str], None] | None, line: str) -> None:
    if log is not None:
        log(line)


def _check_output(out_dir: str | Path, *, resume: bool, force: bool) -> Path:
    """The output folder, checked before any work: a new run refuses an existing run's folder
    unless ``force``; a resumed run needs one."""
    out = Path(out_dir)
    if resume:
        if not (out / "run.json").is_file():
            raise ConfigError(f"nothing to resume: {out / 'run.json'} does not exist")
        return out
    try:
        return prepare_output(out, force=force, exists=("run.json", "report.json"), mkdir=False)
    except OutputExistsError:
        raise OutputExistsError(f"{out} already holds a privacy run; pass --resume to continue it or --force to start over") from None


def _start(out: Path, identity: dict[str, Any], *, resume: bool) -> None:
    """Record the run's ``identity`` in ``run.json`` (a new run: its old rows removed), or check that
    the resumed run was made with it."""
    marker = out / "run.json"
    identity = json.loads(json.dumps(identity))
    if resume:
        try:
            before = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot resume: {marker} is not a privacy run's record ({exc})") from None
        changed = sorted(k for k in identity if not isinstance(before, dict) or before.get(k) != identity[k])
        if changed:
            raise ConfigError(f"cannot resume {out}: it was run with another {', '.join(changed)}; start a new folder or pass --force")
        return
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "rows").glob("*.json"):
        old.unlink()
    write_text(marker, json.dumps(identity, indent=1, sort_keys=True))


__all__ = ["PrivacyReport", "RowResult", "load_images", "plan", "run", "run_row", "slug", "time_row"]
