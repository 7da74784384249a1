"""A new kind of private model plugs into the service without changing the server or the client.

The test-only kind below has the shape of the complex-valued networks of "Interpretable
Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020, Sec. 3) in one real
dimension: the client draws a secret sign s ∈ {−1, +1} per sample (the angle θ, with e^{iθ}
restricted to ±1), sends x' = s·x, the server runs an odd model Φ (Φ(−x) = −Φ(x), the
rotation-equivariance the processing module has), and the client decodes s·Φ(x') = Φ(x). Its
secret is a torch.Generator, not a key: the client and kinds are generic in it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from veilnet import metrics
from veilnet.errors import KeyMismatchError, ModelFormatError
from veilnet.serve import Client, ServedModel, create_app, kinds, local_server
from veilnet.serve.kinds import Expectation


class SignKind:
    """Kind[torch.Generator, torch.Tensor]: a random sign per sample, kept on the client."""

    name = "sign-test"

    def expectation(self, params: Mapping[str, Any]) -> Expectation:
        try:
            dim = int(params["dim"])
        except (KeyError, TypeError, ValueError):
            raise ModelFormatError("card's extra.sign-test must give dim") from None
        return Expectation(kind=self.name, input_shape=(dim,), dtype="float32", params={"dim": dim})

    def load_secret(self, path: str | os.PathLike[str]) -> torch.Generator:
        return torch.Generator().manual_seed(int(Path(path).read_text()))

    def check_secret(self, secret: torch.Generator, expected: Expectation) -> None:
        if not isinstance(secret, torch.Generator):
            raise KeyMismatchError(f"the {self.name} kind takes a torch.Generator, got {type(secret).__name__}")

    def image_shape(self, expected: Expectation, secret: torch.Generator) -> tuple[int, int, int]:
        return 1, 1, expected.input_shape[0]

    def encode(self, images: torch.Tensor, secret: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = metrics.as_float(images).flatten(1)
        signs = torch.randint(0, 2, (x.shape[0], 1), generator=secret).float() * 2 - 1
        return signs * x, signs

    def decode(self, outputs: torch.Tensor, state: torch.Tensor, secret: torch.Generator) -> torch.Tensor:
        return outputs * state


class OddModel(torch.nn.Module):
    """Φ(x) = W·x (no bias: odd); records every batch it is given, as a curious server would."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, classes, bias=False)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.linear(x)


def test_a_new_kind_plugs_in_without_server_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))  # the registration ends with the test
    kinds.register(SignKind())
    torch.manual_seed(0)
    dim, classes = 8, 5
    model = OddModel(dim, classes)
    served = ServedModel.from_model(model, {"architecture": "odd-linear", "extra": {"sign-test": {"dim": dim}}})
    model.seen.clear()  # the server's probe on zeros
    images = torch.rand(12, 1, 1, dim)
    with torch.no_grad():
        plain = model.linear(images.flatten(1))
    (tmp_path / "seed.txt").write_text("7\n")
    with local_server(create_app(served, tokens=None)) as url:
        for secret in (torch.Generator().manual_seed(3), tmp_path / "seed.txt"):  # the secret itself, or its file
            model.seen.clear()
            with Client(url, secret) as client:
                assert client.kind.name == "sign-test" and client.image_shape() == (1, 1, dim)
                logits = client.logits(images)
            assert torch.allclose(logits, plain, atol=1e-5)
            sent = torch.cat(model.seen)
            signs = (sent / images.flatten(1)).sign()[:, :1]
            assert torch.allclose(sent, signs * images.flatten(1))  # the server saw ±x, never the signs
            assert (signs < 0).any() and (signs > 0).any()
        with Client(url, 42) as client, pytest.raises(KeyMismatchError, match="torch.Generator, got int"):
            client.check_secret()


def test_a_model_of_an_unknown_kind_is_not_served() -> None:
    with pytest.raises(ModelFormatError, match="must be transformed"):
        ServedModel.from_model(OddModel(4, 2), {"architecture": "odd-linear", "extra": {"sign-test": {"dim": 4}}})
