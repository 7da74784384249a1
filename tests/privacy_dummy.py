"""A method registered from a test (tests/test_privacy.py): two defences the privacy benchmark must
run without any change to its code — the image itself sent to the server (``raw``), and the image
with Gaussian pixel noise of standard deviation σ drawn by the device (``pixel-noise``)."""

from __future__ import annotations

import torch
from torch import nn

from veilnet.data import ImageSplit
from veilnet.plugins import Method
from veilnet.privacy.defences import Defence, Row, Setup


class PixelRow(Row):
    """Sends ``I + σ·ε`` (σ = 0: the image itself); the server runs a linear classifier."""

    def __init__(self, sigma: float, setup: Setup) -> None:
        c, h, w = setup.image_shape
        self.sigma, self.setup = sigma, setup
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, setup.num_classes))
        self.encoder = nn.Identity()
        self.sends = "the image" if sigma == 0 else f"the image plus noise σ={sigma:g}"

    def fit(self, train: ImageSplit) -> dict[str, float]:
        return self.setup.train(self.model, train)

    def send(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        return images + self.sigma * noise, None

    def serve(self, sent: torch.Tensor) -> torch.Tensor:
        return self.model(sent)


DEFENCES = {
    "raw": Defence("raw", "dummy-privacy", lambda value, setup: PixelRow(0.0, setup), describe="the image itself", reference_row=True),
    "pixel-noise": Defence("pixel-noise", "dummy-privacy", PixelRow, knob="σ", values=(0.5, 2.0), describe="Gaussian pixel noise"),
}
METHOD = Method("dummy-privacy", defences={name: "privacy_dummy" for name in DEFENCES})
