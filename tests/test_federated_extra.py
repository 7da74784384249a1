"""``veilnet fl`` without Flower: one line naming the extra to install, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Run the CLI with MODULE unimportable (None in sys.modules: ``import MODULE`` raises ModuleNotFoundError).
WITHOUT = "import sys; sys.modules[sys.argv.pop(1)] = None; from veilnet.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("missing", ["flwr", "ray"])
def test_fl_run_without_flower_names_the_extra(missing: str, tmp_path: Path) -> None:
    out = tmp_path / "fl"
    argv = ["fl", "run", "--model", "lenet", "--clients", "2", "--rounds", "1", "-o", str(out)]
    done = subprocess.run([sys.executable, "-c", WITHOUT, missing, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"veilnet: error: veilnet fl needs {missing}: pip install 'veilnet[fl]'\n"  # one line, no traceback
    assert not out.exists()
