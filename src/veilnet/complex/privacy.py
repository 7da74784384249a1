"""The complex-valued networks and their real baselines as rows of the privacy benchmark
(:mod:`veilnet.privacy.defences`) — Xiang et al., "Interpretable Complex-Valued Neural Networks for
Privacy Protection" (ICLR 2020), sections 4.1–4.3 and 5.1.

Every row is the benchmark's architecture (``Setup.split_model``) cut where section 5.1 cuts it:
the device runs the encoder g, the server the processing module Φ, the device the decoder d.

* ``none`` — the original network, unprotected (the paper's first baseline, and the
  benchmark's reference row): the device sends ``a = g(I)``.
* ``layers`` — baseline "with additional layers": the GAN's generator convolution appended to g,
  no adversarial loss; the device sends ``g(I)``.
* ``noise`` (knob γ, default 0.2, 0.5, 1 as the paper's Table 1) — the noisy baseline: the device
  sends ``a + γ·ε``, ε Gaussian scaled per sample to ``mean|ε| = mean|a|``
  (:class:`~veilnet.complex.models.FeatureNoise`), drawn from the device's generator; the released
  encoder is the noise-free g.

These three train like every real row (:meth:`Setup.train`) and release g (:attr:`Row.encoder`),
so the benchmark's optimisation inversion runs through it.

* ``complex`` (knob λ, the weight of the WGAN loss in Eq. 9; default 0, 0.1, 1) — the
  complex-valued network trained by :func:`~veilnet.complex.training.train_complex` (its own Adam
  defaults; the budget's epochs, batch size and seed). The device sends Eq. 2,
  ``x = e^{iθ}(g(I) + g(I′)·i)``, θ ~ U[0, 2π) per image and I′ another image of the batch sent
  (a batch of one image gets b = 0), both drawn from the device's generator
  (:func:`~veilnet.complex.training.simulate_device`, the draws training and the attacks use);
  the server computes ``Φ(x)``; the device decodes
  ``d(Re[Φ(x)·e^{−iθ}])`` (Eq. 3), which by Eq. 4 does not depend on θ. No encoder is released to
  the optimisation inversion (x depends on the secret θ and counterpart): the attacker observes
  its own images through the same device step with its own θ′ and counterparts — what the
  paper's inversion attack 2 trains on, so the benchmark's common inverter *is* dec(x).
  λ = 0 trains Φ on the task alone (the rotation, not the encoder, hides a), 0.1 is the training
  default and 1 weighs the k-anonymity of the features as much as the task: the sweep runs from
  a network that merely rotates its features to one trained to make the decoys of every wrong
  angle look real, which is what moves the angle attacks (and so dec(a*)) off their target.

The complex row's own attacks (:meth:`ComplexRow.attacks`) are the angle attacks of section 4.3
and the stronger ones of :mod:`veilnet.complex.attacks.suite`: dec(a*) with θ̂ from the paper's
discriminator attack, dec(a*) with θ̂ from the angle regression, the phase-invariant inversion,
and the optimisation inversion through g on a* (regression θ̂). They are not given the
benchmark's victim tensor: :func:`~veilnet.complex.attacks.suite.run_attacks` draws the victim's
θ and counterparts itself, from the budget's seed, on the same victim images (the attacker never
sees them either way). Not returned: ``dec(a) true θ`` (it decodes with the victim's θ — an upper
bound, not an attack) and ``dec(x)`` (the benchmark's common inverter already is it).
"""

from __future__ import annotations

from typing import Any

import torch

from veilnet.checks import check_number
from veilnet.complex.attacks.suite import ANGLE_SOURCES, AttackSettings, run_attacks
from veilnet.complex.models import ComplexNet
from veilnet.complex.training import ComplexTrainConfig, simulate_device, train_complex
from veilnet.data import ImageSplit
from veilnet.errors import ConfigError
from veilnet.privacy.defences import AttackContext, Defence, Row, Setup, SplitRow

REFERENCE = 'Xiang et al., "Interpretable Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020)'


class NoisyRow(SplitRow):
    """The noisy baseline (section 5.1): the network's own :class:`FeatureNoise` on g(I), drawn
    from the device's generator (in training it draws as the network does)."""

    def release(self, a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.net.noise.generator = generator
        return self.net.noise(a)


class ComplexRow(Row):
    """The complex-valued network at λ = ``adversarial_weight`` (see the module docstring)."""

    sends = "x = e^{iθ}(g(I) + g(I′)·i), θ and I′ secret"

    def __init__(self, net: ComplexNet, setup: Setup, adversarial_weight: float) -> None:
        self.net, self.setup, self.adversarial_weight = net.to(setup.device), setup, adversarial_weight

    def fit(self, train: ImageSplit) -> dict[str, float]:
        b = self.setup.budget
        config = ComplexTrainConfig(epochs=b.epochs, batch_size=b.batch_size, seed=b.seed, adversarial_weight=self.adversarial_weight)
        last = train_complex(self.net, train, None, config=config, device=self.setup.device, progress=self.setup.progress).history[-1]
        return {"train_accuracy": float(last["train_accuracy"]), "wasserstein": float(last["wasserstein"])}

    @torch.no_grad()
    def send(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1–2; the state kept for :meth:`receive` is θ (float64, on the CPU)."""
        x, theta, _ = simulate_device(self.net.encoder(images.to(self.setup.device)), generator)
        return x, theta

    @torch.no_grad()
    def serve(self, sent: torch.Tensor) -> torch.Tensor:
        return self.net.process(sent)

    @torch.no_grad()
    def receive(self, answer: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.net.decode(answer, state)

    def attacks(self, context: AttackContext) -> list[Any]:
        """dec(a*) for both angle attacks (extra: the angle's mean error, rad), the phase-invariant
        inversion and, with optimisation steps in the budget, the optimisation inversion through g."""
        b = context.budget
        names = ["inversion", "phase-invariant", *(["optimisation"] if b.optimisation_steps else [])]
        settings = AttackSettings(
            attacks=names,
            attacker_images=len(context.attacker),
            max_images=len(context.victim),
            epochs=b.attack_epochs,
            angle_epochs=b.attack_epochs,
            unet_width=b.unet_width,
            optimisation_steps=max(1, b.optimisation_steps),
            seed=b.seed,
            upper_bound=False,
        )
        report, reconstructions = run_attacks(self.net, context.attacker, context.victim, settings=settings, device=context.device, progress=context.progress)
        angle_error = {f"dec(a*) {ANGLE_SOURCES[a.attack]}": a.mean_error for a in report.angle}
        return [
            context.score(
                r.attack,
                r.features,
                reconstructions[r.attack],
                extra={**r.extra, **({"angle_error": angle_error[r.attack]} if r.attack in angle_error else {})},
                config=r.config,
            )
            for r in report.inversion
        ]


def _no_knob(name: str, value: float | None) -> None:
    if value is not None:
        raise ConfigError(f"defence {name} has no knob; it takes no value, got {value!r}")


def _none(value: float | None, setup: Setup) -> Row:
    _no_knob("none", value)
    return SplitRow(setup.split_model("split"), setup, "the encoder's feature g(I)")


def _layers(value: float | None, setup: Setup) -> Row:
    _no_knob("layers", value)
    return SplitRow(setup.split_model("split", additional_layers=True), setup, "g(I), the generator layer appended to the encoder")


def _noise(value: float | None, setup: Setup) -> Row:
    gamma = check_number("noise level γ", value, low=0.0, low_open=True)
    return NoisyRow(setup.split_model("split", noise=gamma), setup, f"g(I) + {gamma:g}·ε, ε Gaussian at the feature's mean magnitude")


def _complex(value: float | None, setup: Setup) -> Row:
    weight = check_number("adversarial weight λ", value, low=0.0)
    return ComplexRow(setup.split_model("complex"), setup, weight)


DEFENCES: dict[str, Defence] = {
    "none": Defence(
        "none",
        "complex",
        _none,
        describe="the real split network, unprotected: the server sees g(I)",
        reference=f"{REFERENCE}, section 5.1 (the original network)",
        reference_row=True,
    ),
    "layers": Defence(
        "layers",
        "complex",
        _layers,
        describe="the real split network with the generator layer appended to the encoder, no adversarial loss",
        reference=f"{REFERENCE}, section 5.1 (the baseline with additional layers)",
    ),
    "noise": Defence(
        "noise",
        "complex",
        _noise,
        knob="γ",
        values=(0.2, 0.5, 1.0),
        describe="Gaussian noise γ·ε on the released feature, ε at the feature's mean magnitude",
        reference=f"{REFERENCE}, section 5.1 (the noisy baseline), Table 1",
    ),
    "complex": Defence(
        "complex",
        "complex",
        _complex,
        knob="λ",
        values=(0.1, 0.0, 1.0),  # the training default first: the quick mode runs it
        describe="complex-valued network: the feature rotated by a secret angle θ beside another image's, λ the weight of the WGAN loss",
        reference=f"{REFERENCE}, sections 4.1–4.3 (Eq. 2–4, 8–9)",
    ),
}

__all__ = ["DEFENCES", "ComplexRow", "NoisyRow"]
