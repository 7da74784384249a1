"""Every attack on a complex-valued network, on the same victim images, beside the same attacks on
the real baselines — what ``veilnet complex attack`` runs: Xiang et al., "Interpretable
Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020), sections 4.3, 5.1–5.3,
Tables 1–2 (reconstruction), Table 4 (angle), Fig. 3 and Table 5 (property inference), Fig. 2
(the reconstruction grid), and the stronger attacks the paper did not try.

Who sees what (the paper's section 3): the attacker is the server or an eavesdropper. It knows
the released encoder g, processor Φ and decoder d, trains every attack model on **its own
images** — ``attacker_images`` of the data's ``train`` split, with their labels — and is tested
on the **victim's images** — ``max_images`` of the ``test`` split, disjoint from its own; both
the first images of each class in turn (:func:`~veilnet.data.balanced_head`), so every class has its share. For
each victim image it sees only ``x = e^{iθ}(g(I) + g(I′)·i)``; θ ~ U[0, 2π)
and the counterpart I′ (another victim image) are drawn from ``seed``
(:func:`~veilnet.complex.attacks.angle.victim_features`), never shown to the attacker.

The attacker's own features. It simulates the device on its own images once —
``x′ = e^{iθ′}(g(I) + g(I″)·i)``, its own θ′ and counterparts — and every angle attack estimates
θ̂ on x′ exactly as on the victim's x, so that a* = Re[x′·e^{−iθ̂}] carries the same mistakes on
both sides. A feature source is a pair (the attacker's features of its images, the victim's
features); the sources are

* each real baseline's ``SplitNet.features`` (the original network, with additional layers,
  noisy with γ; the noise drawn from ``seed`` for the victim), — the paper's baselines;
* ``a*`` with the paper's angle attack (D′ and a grid search, section 4.3) — the paper's
  attack 1;
* ``a*`` with the supervised angle regression — stronger, not in the paper;
* ``a = g(I)``, the exact angle — the upper bound of any angle attack (``upper_bound``).

On every source: **inversion** (the zoo's U-Net ``dec`` trained on the attacker's (feature, I),
:func:`veilnet.attacks.inversion.train_inverter`; ``Î = dec(victim feature)``) and the four
**property inference** attacks (:mod:`veilnet.attacks.property`; hidden property = the fine
class of the data's labels): 1, a classifier trained on the attacker's raw images applied to
``dec(feature)``; 2, a classifier trained and tested on the feature; 3, trained and tested on
``dec(feature)``; 4, k-NN of the feature among the attacker's, k = 1, 3, 5. Besides, on the
complex network only: **dec(x)** (attack 2, :func:`~veilnet.complex.attacks.inversion.inversion_attack_2`
— trained on x′ with fresh random phases, which is also the random-phase-augmentation inverter),
**phase-invariant inversion** (:func:`~veilnet.complex.attacks.inversion.phase_invariant_inversion`) and
**optimisation inversion** through g (:func:`~veilnet.attacks.inversion.optimisation_inversion`,
on a* from the regression, started at the attacker's mean image). (The comparison with another
method on the same victim images — keyed images under the same learned inversion — is a
benchmark's: benchmarks/complex_vs_keyed.py.)

Every figure is reported beside its trivial counterpart (the attacker's mean image for
reconstructions, the majority class for properties, π/2 for angles) and the paper's number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veilnet.attacks import inversion as inv
from veilnet.attacks import property as prop
from veilnet.attacks.property import PropertyResult
from veilnet.checks import is_int
from veilnet.complex.attacks import angle as ang
from veilnet.complex.attacks import inversion as cinv
from veilnet.complex.models import ComplexNet, SplitNet, batched
from veilnet.data import ImageSplit, balanced_head
from veilnet.devices import resolve_device
from veilnet.errors import ConfigError, ShapeError
from veilnet.report import Result, markdown_table

#: What ``--attacks`` may name. "angle" runs whenever "inversion" or "property" does (they
#: need its estimates).
ATTACKS = ("angle", "inversion", "property", "dec-x", "phase-invariant", "optimisation")

#: Each angle attack → the name of its estimate in the feature sources (``a* NAME``, inverted as
#: the row ``dec(a*) NAME``).
ANGLE_SOURCES = {"paper-discriminator": "paper θ̂", "regression": "regression θ̂"}
#: The paper's figures (Tables 1, 2, 4) by architecture and row: reconstruction error E‖Î − I‖
#: on CIFAR-10 and the angle attack's mean error (rad).
PAPER = {
    "lenet": {
        "original": 0.0769,
        "additional layers": 0.1208,
        "noisy γ=0.2": 0.0948,
        "noisy γ=0.5": 0.1076,
        "noisy γ=1": 0.1274,
        "dec(a*) paper θ̂": 0.2405,
        "dec(x)": 0.2353,
        "paper-discriminator": 0.7884,
    },
    "resnet20-alpha": {"original": 0.0906, "additional layers": 0.1225, "dec(a*) paper θ̂": 0.2664, "dec(x)": 0.2420, "paper-discriminator": 0.7890},
}
#: The public reproduction's figures by architecture and row (its README's tables, which are
#: images): the reconstruction errors are ranges over its LeNet and ResNets together (which
#: network gives which end is not stated); the paper's angle attack is stated for LeNet only.
_REPRODUCTION_RANGES = {"original": "0.058–0.093 (its LeNet and ResNets)", "dec(a*) paper θ̂": "0.190–0.246 (its LeNet and ResNets)"}
REPRODUCTION = {
    "lenet": {**_REPRODUCTION_RANGES, "paper-discriminator": "0.245 (its LeNet)"},
    "resnet20-alpha": _REPRODUCTION_RANGES,
    "resnet20-beta": _REPRODUCTION_RANGES,
}
#: Table 5 (CIFAR-100, ResNet-56-α, hidden = the 100 classes), k-NN error for k = 1, 3, 5.
PAPER_KNN = {"with additional layers": (0.7338, 0.6837, 0.7116), "complex (a*)": (0.9444, 0.9363, 0.925)}


@dataclass(frozen=True)
class AttackSettings(Result):
    """What ``veilnet complex attack`` runs and how long it trains.

    ``attacks``: names from :data:`ATTACKS`; ``attacker_images`` / ``max_images``: so many images
    of the train (attacker) and test (victim) splits, balanced over the classes (:func:`~veilnet.data.balanced_head`); ``epochs``: every inverter and
    property classifier; ``angle_epochs``: D′ and the regressor; ``grid``: D′'s candidate angles;
    ``unet_width``: the U-Net's base width; ``optimisation_steps``: Adam steps of the
    optimisation inversion; ``seed``: every draw (the victim's θ and counterparts, the attacker's
    models and draws); ``upper_bound``: with the angle attacks, also invert ``a = g(I)`` with the
    exact angle (``dec(a) true θ``, the upper bound of any angle attack — it uses the victim's
    secret, so it is no attack of its own)."""

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    attacker_images: int = 5000
    max_images: int = 1000
    epochs: int = 10
    angle_epochs: int = 10
    grid: int = 360
    unet_width: int = 32
    batch_size: int = 64
    optimisation_steps: int = 200
    seed: int = 0
    upper_bound: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.attacks) - set(ATTACKS))
        if unknown or not self.attacks:
            raise ConfigError(f"unknown attack {', '.join(unknown) or '(none given)'}; choose from {', '.join(ATTACKS)}")
        for name, minimum in (
            ("attacker_images", 2),
            ("max_images", 2),
            ("epochs", 1),
            ("angle_epochs", 1),
            ("grid", 2),
            ("unet_width", 1),
            ("batch_size", 2),
            ("optimisation_steps", 1),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < minimum:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}")
        if not isinstance(self.upper_bound, bool):
            raise ConfigError(f"upper-bound must be true or false, got {self.upper_bound!r}")

    def runs(self, attack: str) -> bool:
        """Whether ``attack`` runs (the angle attacks also when their estimates are needed)."""
        needs_angle = attack == "angle" and any(a in self.attacks for a in ("inversion", "property"))
        return attack in self.attacks or needs_angle


@dataclass(frozen=True)
class AttackReport(Result):
    """Everything one run of :func:`run_attacks` measured (``report.json``).

    ``angle``: one result per angle attack; ``inversion``: one per reconstruction (``attack``
    names the row: a baseline's label, ``dec(a*) paper θ̂``, ``dec(a*) regression θ̂``,
    ``dec(a) true θ``, ``dec(x)``, ``phase-invariant``, ``optimisation``);
    ``properties``: one per (source, inference attack, k). ``seconds``: wall time per stage."""

    model: str
    architecture: str
    data: str
    attacker: str
    victim: str
    hidden_property: str
    settings: AttackSettings
    baselines: dict[str, str] = field(default_factory=dict)
    angle: list[ang.AngleAttackResult] = field(default_factory=list)
    inversion: list[inv.InversionResult] = field(default_factory=list)
    properties: list[PropertyResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def baseline_label(net: SplitNet) -> str:
    """The paper's name for a real baseline (section 5.1): ``noisy γ=…`` (baseline 2), ``additional
    layers`` (baseline 3) or ``original`` (baseline 1)."""
    gamma = getattr(net.noise, "gamma", 0.0)
    if gamma > 0:
        return f"noisy γ={gamma:g}"
    return "original" if isinstance(net.encoder.generator, nn.Identity) else "additional layers"


@dataclass
class _Source:
    """One feature source: the attacker's features of its own images, the victim's features."""

    name: str
    described: str
    attacker: torch.Tensor
    victim: torch.Tensor
    inverted: str = ""

    @property
    def row(self) -> str:
        """The source's reconstruction row: ``dec(a*) paper θ̂`` for ``a* paper θ̂``, a baseline's label."""
        return self.inverted or self.name


@dataclass
class _Run:
    """The state one run shares between its stages."""

    net: ComplexNet
    attacker: ImageSplit
    victim: ImageSplit
    settings: AttackSettings
    device: torch.device
    progress: bool
    attacker_images: torch.Tensor
    victim_images: torch.Tensor
    x: torch.Tensor
    x_own: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    reconstructions: dict[str, torch.Tensor] = field(default_factory=dict)
    inverters: dict[str, nn.Module] = field(default_factory=dict)

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def inverter_config(self, offset: int = 0) -> inv.InversionConfig:
        s = self.settings
        return inv.InversionConfig(epochs=s.epochs, batch_size=s.batch_size, base_width=s.unet_width, seed=s.seed + offset)

    def score(
        self, attack: str, described: str, rec: torch.Tensor, extra: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None
    ) -> inv.InversionResult:
        self.reconstructions[attack] = rec
        return inv.evaluate_reconstruction(
            attack,
            described,
            rec,
            self.victim_images,
            self.attacker_images,
            attacker_split=_label(self.attacker),
            victim_split=_label(self.victim),
            seed=self.settings.seed,
            victim_seed=self.settings.seed,
            config=config or self.inverter_config().to_dict(),
            extra=extra,
        )


def _label(split: ImageSplit) -> str:
    return f"{split.spec or '(in memory)'}:{split.split or '?'}[:{len(split)}]"


def check_inputs(net: Any, attacker: ImageSplit, victim: ImageSplit, baselines: Mapping[str, Any], settings: AttackSettings) -> None:
    """Every one-line error :func:`run_attacks` can meet, raised before any training."""
    if not isinstance(net, ComplexNet):
        name = (getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__)
        raise ConfigError(f"the attacks need a complex-valued network (complex-*), got {name}; its real baselines are passed with --baseline")
    if attacker.image_shape != victim.image_shape:
        raise ShapeError(f"attacker images {attacker.image_shape} and victim images {victim.image_shape} differ in shape")
    for label, base in baselines.items():
        if not isinstance(base, SplitNet):
            raise ConfigError(f"baseline {label} is not a real split network (split-*)")


def run_attacks(
    net: ComplexNet,
    attacker: ImageSplit,
    victim: ImageSplit,
    *,
    baselines: Mapping[str, SplitNet] | None = None,
    settings: AttackSettings | None = None,
    model_label: str = "",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[AttackReport, dict[str, torch.Tensor]]:
    """Run the attacks of ``settings`` on ``net`` and on each real baseline (``baselines``: label →
    :class:`SplitNet`, e.g. from :func:`baseline_label`). Returns the report and the victim's
    reconstructions by row (for :func:`save_grid`)."""
    settings = settings or AttackSettings()
    baselines = dict(baselines or {})
    check_inputs(net, attacker, victim, baselines, settings)
    dev = resolve_device(device)
    attacker, victim = balanced_head(attacker, settings.attacker_images), balanced_head(victim, settings.max_images)
    net = net.to(dev).eval()
    for base in baselines.values():
        base.to(dev).eval()
    x, theta = ang.victim_features(net, victim, seed=settings.seed, device=dev)
    simulate = cinv.complex_features(net, generator=torch.Generator().manual_seed(settings.seed + ang.ATTACKER_SEED_OFFSET + 7))
    run = _Run(
        net,
        attacker,
        victim,
        settings,
        dev,
        progress,
        attacker.float_images(),
        victim.float_images(),
        x,
        batched(simulate, attacker.float_images(), device=dev),
    )
    angles, estimates = _angle_attacks(run, theta) if settings.runs("angle") else ([], {})
    sources = _sources(run, baselines, estimates)
    inversion: list[inv.InversionResult] = []
    if settings.runs("inversion") or settings.runs("property"):
        inversion += [run.timed("inversion", lambda s=s: _invert(run, s)) for s in sources]
    if not settings.runs("inversion"):
        inversion = []
    inversion += _complex_only(run, estimates)
    properties = run.timed("property", lambda: _properties(run, sources)) if settings.runs("property") else []
    report = AttackReport(
        model=model_label,
        architecture=(getattr(net, "veilnet_arch", None) or {}).get("name", type(net).__name__),
        data=attacker.spec,
        attacker=_label(attacker),
        victim=_label(victim),
        hidden_property=f"the fine class ({victim.num_classes} classes)",
        settings=settings,
        baselines={label: baseline_label(b) for label, b in baselines.items()},
        angle=angles,
        inversion=inversion,
        properties=properties,
        seconds=run.seconds,
    )
    return report, {k: v for k, v in run.reconstructions.items() if k in {r.attack for r in inversion}}


def _angle_attacks(run: _Run, theta: torch.Tensor) -> tuple[list[ang.AngleAttackResult], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Both angle attacks; returns their results and, per attack, θ̂ on (the attacker's x′, the victim's x)."""
    s, results, estimates = run.settings, [], {}
    seed = s.seed + ang.ATTACKER_SEED_OFFSET
    common = {"epochs": s.angle_epochs, "seed": seed, "device": run.device, "progress": run.progress}
    for attack, train, estimate, grid in (
        (
            "paper-discriminator",
            lambda: ang.train_angle_discriminator(run.net, run.attacker, **common),
            lambda m, x: ang.discriminator_angles(m, x, grid=s.grid, progress=run.progress),
            s.grid,
        ),
        ("regression", lambda: ang.train_angle_regressor(run.net, run.attacker, **common), lambda m, x: m.angles(x), None),
    ):
        start = time.perf_counter()
        model, history = train()
        trained = time.perf_counter()
        theta_hat = estimate(model, run.x)
        done = time.perf_counter()
        estimates[attack] = (estimate(model, run.x_own), theta_hat)
        results.append(
            ang.angle_result(
                attack,
                run.net,
                run.attacker,
                run.victim,
                theta_hat,
                theta,
                epochs=s.angle_epochs,
                grid=grid,
                seed=s.seed,
                tolerance=ang.TOLERANCE,
                train_seconds=trained - start,
                attack_seconds=done - trained,
                history=history,
            )
        )
        run.seconds["angle"] = run.seconds.get("angle", 0.0) + time.perf_counter() - start
    return results, estimates


def _sources(run: _Run, baselines: Mapping[str, SplitNet], estimates: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> list[_Source]:
    """The feature sources inversion and property inference run on (see the module docstring)."""
    sources = []
    for label, base in baselines.items():
        noise = getattr(base.noise, "generator", "none")
        if noise != "none":
            base.noise.generator = torch.Generator(device=run.device).manual_seed(run.settings.seed + ang.ATTACKER_SEED_OFFSET)
        own = batched(base.features, run.attacker_images, device=run.device)
        if noise != "none":
            base.noise.generator = torch.Generator(device=run.device).manual_seed(run.settings.seed)
        sources.append(_Source(label, f"{baseline_label(base)} baseline: SplitNet.features", own, batched(base.features, run.victim_images, device=run.device)))
    for attack, name in ANGLE_SOURCES.items():
        if attack in estimates:
            own_hat, victim_hat = estimates[attack]
            sources.append(
                _Source(
                    f"a* {name}",
                    f"a* = Re[x·e^{{−iθ̂}}], θ̂ from the {attack} angle attack",
                    cinv.rotate_back(run.x_own, own_hat.to(run.device)),
                    cinv.rotate_back(run.x, victim_hat.to(run.device)),
                    f"dec(a*) {name}",
                )
            )
    if estimates and run.settings.upper_bound:
        g = run.net.encoder
        sources.append(
            _Source(
                "a true θ",
                "a = g(I): the exact angle (upper bound of any angle attack)",
                batched(g, run.attacker_images, device=run.device),
                batched(g, run.victim_images, device=run.device),
                "dec(a) true θ",
            )
        )
    return sources


def _invert(run: _Run, source: _Source) -> inv.InversionResult:
    config = run.inverter_config()
    dec = inv.train_inverter(source.attacker, run.attacker_images, **config.to_dict(), device=run.device, progress=run.progress, desc=f"inverter: {source.row}")
    run.inverters[source.row] = dec
    return run.score(source.row, source.described, inv.reconstruct(dec, source.victim, device=run.device))


def _complex_only(run: _Run, estimates: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> list[inv.InversionResult]:
    """dec(x), phase-invariant and optimisation inversion of the complex features."""
    s, results = run.settings, []
    common = {
        "config": run.inverter_config(),
        "attacker_split": _label(run.attacker),
        "victim_split": _label(run.victim),
        "victim_seed": s.seed,
        "device": run.device,
        "progress": run.progress,
    }
    if s.runs("dec-x"):
        result, rec = run.timed("dec-x", lambda: cinv.inversion_attack_2(run.net, run.attacker_images, run.victim_images, run.x, **common))
        run.reconstructions[result.attack] = rec
        results.append(result)
    if s.runs("phase-invariant"):
        result, rec = run.timed("phase-invariant", lambda: cinv.phase_invariant_inversion(run.net, run.attacker_images, run.victim_images, run.x, **common))
        run.reconstructions[result.attack] = rec
        results.append(result)
    if s.runs("optimisation"):
        results.append(run.timed("optimisation", lambda: _optimisation(run, estimates)))
    return results


def _optimisation(run: _Run, estimates: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> inv.InversionResult:
    """Optimisation inversion through g of a* from the regression's θ̂ (the best estimate), or
    from θ̂ = 0 when the angle attacks did not run."""
    theta_hat = estimates["regression"][1] if "regression" in estimates else torch.zeros(run.x.shape[0], dtype=torch.float64)
    target = cinv.rotate_back(run.x, theta_hat.to(run.device))
    mean = run.attacker_images.mean(0, keepdim=True)
    steps = run.settings.optimisation_steps
    rec, distance = inv.optimisation_inversion(
        run.net.encoder, target, run.victim_images.shape[1:], steps=steps, init=mean, seed=run.settings.seed, device=run.device, progress=run.progress
    )
    return run.score(
        "optimisation",
        "argmin ‖g(Î) − a*‖²/‖a*‖² + λ_TV·TV(Î), a* from the regression θ̂",
        rec,
        extra={"feature_distance": float(distance.mean())},
        config={"steps": steps, "init": "attacker's mean image"},
    )


def _properties(run: _Run, sources: Sequence[_Source]) -> list[PropertyResult]:
    """Property inference 1–4 (section 4.3) on every source, and the raw images as reference."""
    s = run.settings
    own_labels, victim_labels = run.attacker.labels, run.victim.labels
    common = {"num_classes": run.victim.num_classes, "attacker_split": _label(run.attacker), "victim_split": _label(run.victim), "seed": s.seed}
    train = {**common, "epochs": s.epochs, "batch_size": s.batch_size, "device": run.device, "progress": run.progress}
    raw_result, raw_classifier = prop.classifier_attack(
        "raw images · classifier", "the victim's images themselves (reference)", run.attacker_images, own_labels, run.victim_images, victim_labels, **train
    )
    results = [
        raw_result,
        *prop.knn_attack(
            "raw images · inference 4",
            "the victim's images themselves (reference)",
            run.attacker_images,
            own_labels,
            run.victim_images,
            victim_labels,
            **common,
            device=run.device,
        ),
    ]
    for source in sources:
        dec = run.inverters[source.row]
        dec_victim = run.reconstructions[source.row]
        dec_own = inv.reconstruct(dec, source.attacker, device=run.device)
        results.append(
            prop.classifier_attack(
                f"{source.name} · inference 1",
                "dec(feature) into a classifier trained on raw images",
                run.attacker_images,
                own_labels,
                dec_victim,
                victim_labels,
                classifier=raw_classifier,
                **train,
            )[0]
        )
        results.append(
            prop.classifier_attack(f"{source.name} · inference 2", "the feature", source.attacker, own_labels, source.victim, victim_labels, **train)[0]
        )
        results.append(prop.classifier_attack(f"{source.name} · inference 3", "dec(feature)", dec_own, own_labels, dec_victim, victim_labels, **train)[0])
        results += prop.knn_attack(
            f"{source.name} · inference 4",
            "k-NN of the feature among the attacker's",
            source.attacker,
            own_labels,
            source.victim,
            victim_labels,
            **common,
            device=run.device,
        )
    return results


# --------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def markdown(report: AttackReport) -> str:
    """The report as Markdown tables shaped like the paper's Tables 4, 1–2 and 5, with the
    paper's and the public reproduction's numbers beside ours."""
    paper = PAPER.get(_paper_key_of(report.architecture), {})
    reproduction = REPRODUCTION.get(_paper_key_of(report.architecture), {})
    s = report.settings
    lines = [
        f"# Attacks on {report.architecture} ({report.model or 'in memory'})",
        "",
        f"Attacker: {report.attacker} (its own images and labels); victim: {report.victim} (disjoint). "
        f"Seed {s.seed}; inverters and classifiers {s.epochs} epochs, angle attacks {s.angle_epochs} epochs, U-Net width {s.unet_width}. "
        f"Hidden property: {report.hidden_property}.",
    ]
    if report.angle:
        lines += ["", "## Angle recovery (the paper's Table 4)", "", "Mean |θ̂ − θ| wrapped to [0, π]; chance π/2 = 1.5708.", ""]
        rows = [
            [
                r.attack,
                r.mean_error,
                r.median_error,
                r.within_tolerance,
                r.near_mirror,
                r.near_counterpart,
                _fmt(paper.get(r.attack)),
                reproduction.get(r.attack, "—"),
            ]
            for r in report.angle
        ]
        lines.append(markdown_table(["attack", "mean error", "median", "within π/8", "near θ+π", "near θ+π/2", "paper", "reproduction"], rows))
    if report.inversion:
        lines += [
            "",
            "## Reconstruction (the paper's Tables 1–2, Fig. 2)",
            "",
            "error = the paper's E‖Î − I‖: per image the RMS of Î − I over its pixels (in [0, 1]), averaged over images.",
            "",
        ]
        base = report.inversion[0].baseline
        rows = [
            [
                r.attack,
                r.metrics.error,
                r.metrics.mae,
                r.metrics.mse,
                r.metrics.psnr,
                r.metrics.ssim,
                "yes" if r.beats_baseline else "no",
                _fmt(paper.get(r.attack)),
                reproduction.get(r.attack, "—"),
            ]
            for r in report.inversion
        ]
        rows.append(["attacker's mean image (trivial)", base.error, base.mae, base.mse, base.psnr, base.ssim, "—", "—", "—"])
        lines.append(markdown_table(["features", "error", "MAE", "MSE", "PSNR (dB)", "SSIM", "beats mean image", "paper", "reproduction"], rows))
    if report.properties:
        lines += [
            "",
            "## Property inference (the paper's Fig. 3 and Table 5)",
            "",
            f"Error rate on the hidden property ({report.hidden_property}); chance = always the most frequent class.",
            "",
        ]
        table: dict[str, dict[str, float]] = {}
        chance = 0.0
        for p in report.properties:
            source, _, which = p.attack.partition(" · ")
            column = f"{p.k}-NN" if p.k is not None else which.removeprefix("inference ")
            table.setdefault(source, {})[column] = p.error
            chance = p.chance_error
        columns = ["classifier", "1", "2", "3", "1-NN", "3-NN", "5-NN"]
        rows = [[source, *(_fmt(vals.get(c)) for c in columns)] for source, vals in table.items()]
        lines.append(markdown_table(["features", "raw-image classifier", "inference 1", "inference 2", "inference 3", "1-NN", "3-NN", "5-NN"], rows))
        lines += [
            "",
            f"Chance: {chance:.4f}. Paper, Table 5 (CIFAR-100, ResNet-56-α, 100 hidden "
            f"classes), 1/3/5-NN: {'; '.join(f'{k} {v}' for k, v in PAPER_KNN.items())}.",
        ]
    if report.seconds:
        lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()) + "."]
    return "\n".join(lines) + "\n"


def _paper_key_of(architecture: str) -> str:
    return architecture.removeprefix("complex-")


def save_grid(path: str | Path, report: AttackReport, victim_images: torch.Tensor, reconstructions: Mapping[str, torch.Tensor], *, n: int = 8) -> Path:
    """The reconstruction grid like the paper's Fig. 2: the input, then one row per attack in
    the report's order."""
    rows = {r.attack: reconstructions[r.attack] for r in report.inversion if r.attack in reconstructions}
    return inv.save_inversion_grid(path, victim_images, rows, n=n, title=f"{report.architecture}: reconstructions of the victim's images")


__all__ = ["ANGLE_SOURCES", "ATTACKS", "PAPER", "AttackReport", "AttackSettings", "baseline_label", "check_inputs", "markdown", "run_attacks", "save_grid"]
