"""The CLI's error boundary: every user mistake in every command is one stderr line and exit 2.

One parametrised table; its rows live in tests/cli_error_rows/, a module per command group, and
every new command adds its rows there. A row fails if the command exits otherwise, prints more
than one line on stderr, prints a traceback, or does not name the problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_error_rows import all_rows
from veilnet import cli, models
from veilnet.complex.protocol import split_model
from veilnet.keyed import generate_key, public_params, transform_model

ROWS = all_rows()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The files the rows refer to by name: a small plain ConvMixer (and a copy whose card records its data) and a keyed copy, a key that
    fits it (and a keyed copy whose card lacks the key's public parameters), a complex-valued network and its
    server and device parts, a regular file to put outputs under, a corrupt file."""
    root = tmp_path_factory.mktemp("cli-world")
    model = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4)
    models.save(model, root / "model")
    models.save(model, root / "cifar_model", data="folder:cifar10-jpeg.zip")  # its card records the data it was trained on
    key = generate_key("block", 4, 3, 32, seed=1)
    key.save(root / "key.json")
    models.save(transform_model(model, key), root / "keyed", extra={"keyed": public_params(key)})
    models.save(transform_model(model, key), root / "keyed_bare", extra={"keyed": {"fingerprint": key.fingerprint}})
    complex_net = models.create("complex-lenet", width=0.25)  # a complex-valued network and its split (veilnet split)
    models.save(complex_net, root / "complex", input_shape=(3, 32, 32))
    split_model(complex_net, root / "split", pool=torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    (root / "afile").write_text("not a folder\n")
    (root / "report").mkdir()  # a finished `veilnet complex attack` run
    (root / "report" / "report.json").write_text("{}")
    (root / "corrupt.json").write_text("{not json")
    (root / "corrupt.safetensors").write_bytes(b"\x00garbage")
    return {
        "model": str(root / "model"),
        "cifar_model": str(root / "cifar_model"),
        "keyed": str(root / "keyed"),
        "keyed_bare": str(root / "keyed_bare"),
        "key": str(root / "key.json"),
        "afile": str(root / "afile"),
        "corrupt_json": str(root / "corrupt.json"),
        "corrupt_weights": str(root / "corrupt.safetensors"),
        "root": str(root),
        "complex": str(root / "complex"),
        "complex_server": str(root / "split" / "server.json"),
        "complex_device": str(root / "split" / "device.json"),
        "existing_report": str(root / "report"),
    }


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(r[1], r[2], id=r[0]) for r in ROWS])
def test_user_error_is_one_line_and_exit_2(
    argv: list[str], expected: str, world: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [a.format(tmp=tmp_path, **world) for a in argv]
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own errors exit through SystemExit
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}, stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    assert "Traceback" not in err
    assert expected.lower() in lines[0].lower(), f"{expected!r} not in {lines[0]!r}"
