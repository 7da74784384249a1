"""Model files: save → load round trips exactly; every way a file can be wrong is a one-line
ModelFormatError naming the file; foreign CIFAR ResNet checkpoints are read safely and strictly."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from veilnet import models
from veilnet.cli import main
from veilnet.errors import ConfigError, ModelFormatError, OutputExistsError


def _trained_like(name: str, **kwargs: object) -> torch.nn.Module:
    """A model with non-default BN statistics, so a round trip that dropped buffers would show."""
    torch.manual_seed(0)
    model = models.create(name, **kwargs)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet20", {"mean": [0.1, 0.2, 0.3], "std": 0.5}),
        ("convmixer", {"dim": 16, "depth": 2, "kernel_size": 3, "patch_size": 4, "num_classes": 5}),
        ("vit", {"image_size": 32, "patch_size": 8, "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 16}),
    ],
)
def test_round_trip_identical_logits(tmp_path: Path, name: str, kwargs: dict) -> None:
    model = _trained_like(name, **kwargs)
    x = torch.rand(4, 3, 32, 32)
    weights = models.save(model, tmp_path / "m", data="digits", metrics={"accuracy": 0.5}, extra={"seed": 1})
    assert weights == tmp_path / "m.safetensors"
    for spec in (weights, tmp_path / "m.json", tmp_path / "m"):
        loaded = models.load(spec)
        assert not loaded.training
        assert torch.equal(loaded(x), model(x))
    card = models.card(tmp_path / "m")
    assert card["architecture"] == name and card["kwargs"] == kwargs
    assert card["data"] == "digits" and card["metrics"] == {"accuracy": 0.5} and card["extra"] == {"seed": 1}
    assert loaded.veilnet_card == card
    # A loaded model saves again (it carries its architecture).
    models.save(loaded, tmp_path / "again")
    assert torch.equal(models.load(tmp_path / "again")(x), model(x))


def test_directory_and_overwrite(tmp_path: Path) -> None:
    model = models.create("lenet", num_classes=3)
    models.save(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.json").is_file()
    assert models.load(tmp_path).veilnet_card["architecture"] == "lenet"
    with pytest.raises(OutputExistsError, match="model.safetensors exists"):
        models.save(model, tmp_path)
    models.save(model, tmp_path, force=True)
    with pytest.raises(ModelFormatError, match="not built by veilnet.models.create"):
        models.save(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ConfigError, match="JSON"):
        models.save(model, tmp_path / "y", metrics={"acc": torch.tensor(1.0)})


def _saved(tmp_path: Path) -> tuple[Path, Path]:
    models.save(models.create("lenet"), tmp_path / "m")
    return tmp_path / "m.safetensors", tmp_path / "m.json"


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="nothing.json: model card missing"):
        models.load(tmp_path / "nothing")
    weights, card = _saved(tmp_path)
    info = json.loads(card.read_text())

    card.write_text("{not json")
    with pytest.raises(ModelFormatError, match="m.json: corrupt model card"):
        models.load(weights)

    card.write_text(json.dumps({**info, "architecture": "resnet18"}))
    with pytest.raises(ModelFormatError, match="m.json: unknown model 'resnet18'"):
        models.load(weights)

    card.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFormatError, match="m.json: corrupt model card .nested too deeply"):
        models.load(weights)

    for not_an_object in ("[1, 2]", '"lenet"', "null"):
        card.write_text(not_an_object)
        with pytest.raises(ModelFormatError, match="m.json: not a veilnet model card"):
            models.load(weights)

    # An edited card whose arguments build no model names the card and the argument.
    card.write_text(json.dumps({**info, "kwargs": {"image_size": 0}}))
    with pytest.raises(ModelFormatError, match="m.json: lenet argument image_size must be a positive integer"):
        models.load(weights)

    card.write_text(json.dumps({**info, "input_shape": [3, 32]}))
    with pytest.raises(ModelFormatError, match="input_shape"):
        models.load(weights)

    card.write_text(json.dumps({**info, "classes": "0123456789"}))
    with pytest.raises(ModelFormatError, match="'classes' must be a list of class names"):
        models.load(weights)

    card.write_text(json.dumps({**info, "version": 2}))
    with pytest.raises(ModelFormatError, match="version 2 unsupported"):
        models.load(weights)

    # Weights of another architecture, with the card's checksum updated: they must not fit.
    card.write_text(json.dumps({**info, "kwargs": {"num_classes": 7}}))
    with pytest.raises(ModelFormatError, match=r"m.safetensors: weights do not fit LeNet; shape mismatch.*classifier.5.weight \(10, 84\) vs \(7, 84\)"):
        models.load(weights)

    card.write_text(json.dumps(info))
    weights.unlink()
    with pytest.raises(ModelFormatError, match="weights file missing"):
        models.load(card)


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    weights, card = _saved(tmp_path)
    state = load_file(str(weights))
    state.pop("normalize.mean")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    info = json.loads(card.read_text())
    card.write_text(json.dumps({**info, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}))
    with pytest.raises(ModelFormatError, match="missing: normalize.mean; unexpected: extra.weight"):
        models.load(weights)


def test_truncated_and_tampered_weights(tmp_path: Path) -> None:
    weights, _ = _saved(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="m.safetensors: SHA-256 .* differs"):
        models.load(weights)
    tampered = bytearray(data)
    tampered[-3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(tampered))
    with pytest.raises(ModelFormatError, match="tampered"):
        models.load(weights)


def test_checkpoint_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.th"

    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("executed",))

    evil.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(ModelFormatError, match="evil.th: not a safe torch checkpoint"):
        models.load_cifar_resnet(evil)
    assert "executed" not in capsys.readouterr().out

    state = {f"module.{k}": v for k, v in models.create("resnet20").state_dict().items() if not k.startswith("normalize.")}
    partial = tmp_path / "partial.th"
    torch.save({"best_prec1": 50.0, "state_dict": {k: v for k, v in state.items() if not k.startswith("module.linear.")}}, partial)
    with pytest.raises(ModelFormatError, match="partial.th: weights do not fit ResNetCIFAR; missing: linear.bias, linear.weight"):
        models.load_cifar_resnet(partial)

    good = tmp_path / "good.th"
    torch.save({"best_prec1": 50.0, "state_dict": state}, good)
    assert models.load_cifar_resnet(good).veilnet_card["metrics"] == {"best_prec1": 50.0}
    with pytest.raises(ModelFormatError, match="not ResNet-56"):
        models.load_cifar_resnet(good, depth=56)
    with pytest.raises(ModelFormatError, match="checkpoint file missing"):
        models.load_cifar_resnet(tmp_path / "absent.th")


def test_cli_list_import_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "convmixer" in out and "patch_size=4" in out and "resnet110" in out

    state = {f"module.{k}": v for k, v in models.create("resnet20").state_dict().items() if not k.startswith("normalize.")}
    ckpt = tmp_path / "r20.th"
    torch.save({"best_prec1": 91.5, "state_dict": state}, ckpt)
    out_path = tmp_path / "r20"
    assert main(["models", "import-cifar-resnet", str(ckpt), "-o", str(out_path)]) == 0
    card = models.card(out_path)
    assert card["architecture"] == "resnet20" and card["metrics"] == {"best_prec1": 91.5} and card["data"] is None
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(models.load(out_path)(x), models.load_cifar_resnet(ckpt)(x))
    capsys.readouterr()
    assert main(["models", "import-cifar-resnet", str(ckpt), "-o", str(out_path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["models", "import-cifar-resnet", str(ckpt), "-o", str(out_path), "--force"]) == 0

    assert main(["models", "info", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "269,722" in out and "best_prec1" in out

    bogus = tmp_path / "bogus.th"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, bogus)
    assert main(["models", "import-cifar-resnet", str(bogus), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("veilnet: error:") and "bogus.th" in err and err.count("\n") == 1
