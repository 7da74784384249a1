"""The ``veilnet`` command's registration: fast help, every command listed and reachable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from veilnet import cli


def test_help_lists_every_command_without_importing_torch() -> None:
    code = "import sys\nfrom veilnet import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False", "veilnet --help imported torch"
    for name in cli.commands():
        assert f"    {name} " in out


@pytest.mark.parametrize("name", list(cli.commands()))
def test_every_command_registers_from_its_module(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: veilnet " + name in capsys.readouterr().out
