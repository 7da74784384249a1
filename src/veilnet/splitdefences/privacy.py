"""The split-inference defences as rows of the privacy benchmark (:mod:`veilnet.privacy.defences`).

Every row is the zoo's real split network for the benchmark's architecture
(:meth:`veilnet.privacy.defences.Setup.split_model`: ``split-lenet``, ``split-resnet20-alpha``),
trained for the task by :meth:`~veilnet.privacy.defences.Setup.train` like every real row. The
device computes the encoder's feature ``a = g(I)`` and passes it through the defence's layer
(:mod:`veilnet.splitdefences.layers`, in the network's ``noise`` slot) before sending it; the
server runs the processor; the device runs the decoder on the answer. The attacker is He et al.'s
white-box server: :attr:`~veilnet.privacy.defences.Row.encoder` is the released encoder ``g``
without the defence's layer, so the optimisation inversion runs through it, and the learned
inverter trains on what the attacker makes of its own images with its own draws (the default
:meth:`~veilnet.privacy.defences.Row.observe`).

* ``dropout`` (knob ``p``, defaults 0.5 and 0.8, the dropout rates He et al. report): He et al.,
  "Model inversion attacks against collaborative inference" (ACSAC 2019), the dropout defence —
  ``y = m ⊙ g(I) / (1 − p)``, ``m_i ~ Bernoulli(1 − p)``, in training and at inference; the device
  draws each image's mask from its generator.
* ``nopeek`` (knob ``alpha``): Vepakomma et al., "NoPeek: Information leakage reduction to share
  activations in distributed deep learning" (2020), section 3 — the network trained on
  ``CE(f(I), y) + α·DCOR(I, g(I))``, the sample distance correlation of the batch's images and
  features (:func:`~veilnet.splitdefences.layers.distance_correlation`); at inference the device
  sends ``g(I)`` itself. Defaults 0.1, 1, 5: DCOR lies in [0, 1] and the two-class cross-entropy
  starts at ln 2 ≈ 0.69, so α = 0.1 is a light touch (the task dominates), α = 1 weighs the two
  alike, and α = 5 lets the decorrelation dominate (a high-privacy point that costs accuracy).
* ``shredder`` (knob ``beta``): in the spirit of Mireshghallah et al., "Shredder: Learning Noise
  Distributions to Protect Inference Privacy" (ASPLOS 2020), section 3 — additive Laplace noise
  ``y = g(I) + n`` with a learned per-element scale (:class:`~veilnet.splitdefences.layers.LaplaceNoise`,
  ``n = s·e^ρ ⊙ ε``), learned on the trained and then frozen network by minimising
  ``CE(f(I), y) − β·mean_i ρ_i`` (keep the task, grow the noise); a fresh draw per image from the
  device's generator. Defaults 0.1, 0.5, 2.
"""

from __future__ import annotations

import torch
from torch import nn

from veilnet import metrics
from veilnet.checks import check_number
from veilnet.data import ImageSplit
from veilnet.privacy.defences import Defence, Row, Setup, SplitRow
from veilnet.splitdefences.layers import FeatureDropout, FeatureTap, LaplaceNoise, distance_correlation

#: How many training images measure a trained row's own figure (NoPeek's DCOR, Shredder's feature scale).
MEASURE_IMAGES = 256


class LayerRow(SplitRow):
    """The real split network with ``layer`` (``layer(a, generator)``) as the defence between the
    encoder and what the device sends (:class:`~veilnet.privacy.defences.SplitRow`)."""

    def __init__(self, setup: Setup, layer: nn.Module, sends: str) -> None:
        net = setup.split_model("split")
        net.noise = layer
        super().__init__(net, setup, sends)

    def release(self, a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.net.noise(a, generator=generator)

    @torch.no_grad()
    def _measured(self, train: ImageSplit) -> tuple[torch.Tensor, torch.Tensor]:
        """The first :data:`MEASURE_IMAGES` training images and the trained encoder's features of them."""
        images = metrics.as_float(train.images[:MEASURE_IMAGES]).to(self.setup.device)
        with metrics.eval_mode(self.encoder):
            return images, self.encoder(images)


class NoPeekRow(LayerRow):
    """NoPeek: the network trained on ``CE + α·DCOR(I, g(I))`` (see the module docstring)."""

    def __init__(self, setup: Setup, alpha: float) -> None:
        super().__init__(setup, FeatureTap(), "the encoder's feature g(I), trained to decorrelate from I")
        self.alpha = alpha

    def fit(self, train: ImageSplit) -> dict[str, float]:
        tap = self.net.noise
        figures = self.setup.train(self.net, train, penalty=lambda x: self.alpha * distance_correlation(x, tap.recorded))
        return {**figures, "dcor": float(distance_correlation(*self._measured(train)))}


class ShredderRow(LayerRow):
    """Shredder: learned Laplace noise on the frozen trained network (see the module docstring).

    Departures from the paper: Shredder trains the noise tensor's values themselves (initialised
    from a Laplace distribution), collects many such trained tensors and samples one of them per
    inference; here the Laplace distribution's per-element scale is learned directly with the
    reparameterisation ``n = s·e^ρ ⊙ ε`` and every image gets a fresh ``ε``. Shredder's loss
    rewards the noise's magnitude; here the term is ``−β·mean ρ`` — the mean log noise-to-signal
    ratio, the noise's differential entropy per element up to a constant (Laplace(0, b):
    ``1 + ln 2b``). The network's weights are frozen while the noise trains, as in Shredder, but
    batch-norm statistics (ResNet) follow the noisy features. The noise trains with Adam (lr
    :attr:`NOISE_LR`, the budget's epochs and batch size): its scale has one parameter per feature
    element, whose gradient under SGD at the task's learning rate would be too small to move it.
    """

    #: Adam's learning rate for the log noise-to-signal ratios ρ (a step of ≈ NOISE_LR in ρ).
    NOISE_LR = 0.02

    def __init__(self, setup: Setup, beta: float) -> None:
        super().__init__(setup, nn.Identity(), "the encoder's feature g(I) plus learned Laplace noise (a fresh draw per image)")
        self.beta = beta

    def fit(self, train: ImageSplit) -> dict[str, float]:
        from veilnet.training import TrainConfig, train_epochs

        figures = self.setup.train(self.net, train)
        _, features = self._measured(train)
        noise = LaplaceNoise(features.shape[1:], float(features.abs().mean())).to(self.setup.device)
        self.net.noise = noise
        self.net.requires_grad_(False)
        noise.requires_grad_(True)
        b = self.setup.budget
        config = TrainConfig(epochs=b.epochs, batch_size=b.batch_size, optimizer="adam", lr=self.NOISE_LR, weight_decay=0.0, seed=b.seed)
        history = train_epochs(
            self.net, train, config, device=self.setup.device, progress=self.setup.progress, penalty=lambda x: -self.beta * noise.log_ratio.mean()
        )
        return {**figures, "noisy_train_accuracy": float(history[-1]["train_accuracy"]), "noise_to_signal": noise.noise_to_signal()}


def _dropout(p: float | None, setup: Setup) -> Row:
    layer = FeatureDropout(p)
    return LayerRow(setup, layer, f"the encoder's feature g(I) with dropout p={layer.p:g} (a fresh mask per image)")


def _nopeek(alpha: float | None, setup: Setup) -> Row:
    return NoPeekRow(setup, float(check_number("nopeek alpha", alpha, low=0.0)))


def _shredder(beta: float | None, setup: Setup) -> Row:
    return ShredderRow(setup, float(check_number("shredder beta", beta, low=0.0)))


DEFENCES: dict[str, Defence] = {
    "dropout": Defence(
        "dropout",
        "splitdefences",
        _dropout,
        knob="p",
        values=(0.5, 0.8),
        describe="dropout on the released feature in training and at inference",
        reference='He et al., "Model inversion attacks against collaborative inference" (ACSAC 2019), the dropout defence',
    ),
    "nopeek": Defence(
        "nopeek",
        "splitdefences",
        _nopeek,
        knob="alpha",
        values=(0.1, 1.0, 5.0),
        describe="the encoder trained with a distance-correlation penalty between image and feature",
        reference='Vepakomma et al., "NoPeek: Information leakage reduction to share activations in distributed deep learning" (2020), section 3',
    ),
    "shredder": Defence(
        "shredder",
        "splitdefences",
        _shredder,
        knob="beta",
        values=(0.1, 0.5, 2.0),
        describe="learned additive Laplace noise on the feature of the frozen trained network",
        reference='Mireshghallah et al., "Shredder: Learning Noise Distributions to Protect Inference Privacy" (ASPLOS 2020), section 3',
    ),
}

__all__ = ["DEFENCES", "LayerRow", "NoPeekRow", "ShredderRow"]
