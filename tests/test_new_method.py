"""A new method is a new package: a dummy method, written by this test into a folder of its own and
registered as a plugin, trains, saves, serves and is attacked through veilnet's core and toolkits
without any core file knowing its name (docs/architecture.md, "Where a new method goes").

The dummy method hides pixels behind a secret sign per channel, s ∈ {−1, +1}^C broadcast over the
pixels: the device sends
x′ = s ⊙ (2x − 1), the server runs the model whose first layer's columns are multiplied by s, so
W′x′ = W(2x − 1) and the served model's logits equal the plain model's. A fixed mask is a weak
secret: a learned inverter (veilnet.attacks.inversion, method-agnostic) trained on known pairs
undoes it, which this test shows too.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from veilnet import cli, models, plugins
from veilnet.models import registry
from veilnet.serve import kinds

PACKAGE = "veilnet_dummy_method"
FILES = {
    "__init__.py": '"""A dummy method for tests/test_new_method.py: pixels behind a secret sign mask."""\n',
    "plugin.py": """
        from veilnet.plugins import Method

        METHOD = Method(
            "dummy",
            commands={"dummy": ("veilnet_dummy_method.cli", "the dummy method: transform a model with a sign mask")},
            models={"dummy-": "veilnet_dummy_method.models"},
            kinds={"dummy": "veilnet_dummy_method.serving"},
        )
    """,
    "models.py": """
        import torch
        from torch import nn

        from veilnet.models import register


        class SignMLP(nn.Module):
            \"\"\"logits = W2·relu(W1·(2x − 1) + b1) + b2 on flattened pixels.\"\"\"

            def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, hidden: int = 32) -> None:
                super().__init__()
                self.hidden = nn.Linear(in_channels * image_size * image_size, hidden)
                self.out = nn.Linear(hidden, num_classes)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.out(torch.relu(self.hidden(x.flatten(1) * 2 - 1)))


        class MaskedMLP(SignMLP):
            \"\"\"The served model: it takes x′ = s ⊙ (2x − 1) itself (no 2x − 1 of its own).\"\"\"

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.out(torch.relu(self.hidden(x.flatten(1))))


        def transform(model: SignMLP, mask: torch.Tensor) -> MaskedMLP:
            \"\"\"W1′ = W1·diag(s), so that W1′(s ⊙ (2x − 1)) = W1(2x − 1).\"\"\"
            from veilnet import models

            served = models.create("dummy-masked-mlp", **model.veilnet_arch["kwargs"])
            served.load_state_dict(model.state_dict())
            with torch.no_grad():
                served.hidden.weight.mul_(mask.flatten())
            return served


        register("dummy-mlp", SignMLP)
        register("dummy-masked-mlp", MaskedMLP)
    """,
    "serving.py": """
        import os
        from collections.abc import Mapping
        from typing import Any

        import torch

        from veilnet import metrics
        from veilnet.errors import KeyMismatchError, ModelFormatError
        from veilnet.serve.kinds import Expectation, register


        class MaskKind:
            name = "dummy"

            def expectation(self, params: Mapping[str, Any]) -> Expectation:
                shape = params.get("shape")
                if not (isinstance(shape, list) and len(shape) == 3):
                    raise ModelFormatError("card's extra.dummy must give shape [C, H, W]")
                return Expectation(kind=self.name, input_shape=tuple(shape), dtype="float32", params={"shape": shape})

            def load_secret(self, path: str | os.PathLike[str]) -> torch.Tensor:
                return torch.load(path, weights_only=True)

            def check_secret(self, secret: torch.Tensor, expected: Expectation) -> None:
                if tuple(secret.shape) != expected.input_shape:
                    raise KeyMismatchError(f"mask of shape {tuple(secret.shape)} for a model taking {expected.input_shape}")

            def image_shape(self, expected: Expectation, secret: torch.Tensor) -> tuple[int, int, int]:
                return expected.input_shape

            def encode(self, images: torch.Tensor, secret: torch.Tensor) -> tuple[torch.Tensor, None]:
                return (metrics.as_float(images) * 2 - 1) * secret, None

            def decode(self, outputs: torch.Tensor, state: None, secret: torch.Tensor) -> torch.Tensor:
                return outputs


        register(MaskKind())
    """,
    "cli.py": """
        import argparse

        from veilnet.cli import add_command, add_output


        def _transform(args: argparse.Namespace) -> int:
            import torch

            from veilnet import models
            from veilnet_dummy_method.models import transform

            plain = models.load(args.model)
            shape = plain.veilnet_card["input_shape"]
            signs = torch.randint(0, 2, (shape[0], 1, 1), generator=torch.Generator().manual_seed(args.mask_seed)).float() * 2 - 1
            mask = signs.expand(*shape).clone()  # one secret sign per channel
            torch.save(mask, args.mask)
            models.save(transform(plain, mask), args.output, extra={"dummy": {"shape": shape}}, input_shape=shape, force=args.force)
            print(f"transformed -> {args.output}")
            return 0


        def register(sub: argparse._SubParsersAction) -> None:
            p = add_command(sub, "dummy")
            p.add_argument("model")
            p.add_argument("--mask", required=True)
            p.add_argument("--mask-seed", type=int, default=0)
            add_output(p)
            p.set_defaults(func=_transform)
    """,
}


@pytest.fixture
def dummy_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[plugins.Method]:
    """The package written under tmp_path, importable, and its Method registered as an entry point
    would register it; every registration it made is undone afterwards."""
    package = tmp_path / "src" / PACKAGE
    package.mkdir(parents=True)
    for name, text in FILES.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(package.parent))
    plugins.load_models()  # every installed method's, so that what is restored afterwards is whole
    plugins.load_kinds()
    saved_models, saved_kinds = dict(registry.MODELS), dict(kinds.KINDS)
    from veilnet_dummy_method.plugin import METHOD

    plugins.register(METHOD)
    yield METHOD
    plugins.unregister(METHOD.name)
    for table, saved in ((registry.MODELS, saved_models), (kinds.KINDS, saved_kinds)):
        table.clear()
        table.update(saved)
    for module in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[module]


def _core_sources() -> str:
    root = Path(models.__file__).parents[1]
    return "\n".join(p.read_text() for p in root.rglob("*.py"))


def test_a_dummy_method_trains_serves_and_is_attacked_without_the_core_knowing_it(
    dummy_method: plugins.Method, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PACKAGE not in _core_sources() and "dummy-mlp" not in _core_sources()

    # the command line lists and runs its command; the model registry builds its model by name
    assert "dummy" in cli.commands()
    assert "dummy-mlp" in models.names()
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "dummy-mlp", "--data", "digits", "--epochs", "8", "--no-compile", "-o", str(run)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    plain = models.load(run / "model")
    assert type(plain).__module__ == f"{PACKAGE}.models"

    # its command transforms the model; the saved card names its serving kind
    served_path = tmp_path / "served"
    mask_path = tmp_path / "mask.pt"
    assert cli.main(["dummy", str(run / "model"), "--mask", str(mask_path), "-o", str(served_path)]) == 0

    from veilnet import data
    from veilnet.serve import Client, ServedModel, create_app, local_server

    test = data.load("digits", "test")
    images = test.images[:40]
    with torch.no_grad():
        plain_logits = plain.eval()(images.float() / 255)
    with local_server(create_app(ServedModel.load(served_path), tokens=None)) as url, Client(url, mask_path) as client:
        assert client.kind.name == "dummy"
        served_logits = client.logits(images)
    assert torch.allclose(served_logits, plain_logits, atol=1e-4 * plain_logits.abs().max().item())
    accuracy = (served_logits.argmax(1) == test.labels[:40]).float().mean().item()
    assert accuracy > 0.5, "the trained dummy model should classify digits"

    # a method-agnostic attack on what the server sees: a U-Net inverter (veilnet.attacks.inversion)
    # trained on known pairs (the attacker's own images, encoded by the victim's device as the
    # server saw them) inverts the victim's images far better than the mean image does
    from veilnet.attacks.inversion import evaluate_reconstruction, reconstruct, train_inverter

    mask = torch.load(mask_path, weights_only=True)
    attacker = data.load("digits", "train").images[:300]

    def what_the_server_sees(x: torch.Tensor) -> torch.Tensor:
        return (x * 2 - 1) * mask

    inverter = train_inverter(what_the_server_sees, attacker, epochs=8, batch_size=32, lr=5e-3, base_width=4, progress=False)
    seen = what_the_server_sees(images.float() / 255)
    result = evaluate_reconstruction("learned", "x′ = s ⊙ (2x − 1)", reconstruct(inverter, seen), images, attacker)
    assert result.metrics.error < 0.8 * result.baseline.error


def test_a_method_cannot_take_another_methods_names(dummy_method: plugins.Method) -> None:
    with pytest.raises(plugins.RegistrationError, match="already claimed by method 'dummy'"):
        plugins.register(plugins.Method("other", models={"dummy-": "elsewhere"}))
    with pytest.raises(plugins.RegistrationError, match="claims command 'keyed'"):
        plugins.register(plugins.Method("other", commands={"keyed": ("elsewhere", "help")}))
    with pytest.raises(plugins.RegistrationError, match="already registered"):
        models.register("dummy-mlp", torch.nn.Linear)

    class Impostor:  # a kind under the name the dummy method claims, registered before its module is imported
        name = "dummy"

    with pytest.raises(plugins.RegistrationError, match="already registered"):
        kinds.register(Impostor())  # type: ignore[arg-type]
    assert type(kinds.kind("dummy")).__module__ == f"{PACKAGE}.serving"
    assert plugins.register(dummy_method) is dummy_method  # the same method again changes nothing
