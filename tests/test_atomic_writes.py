"""Writes that leave nothing half-done: every writer goes through :func:`veilnet.paths.atomic_write`.

Each family of writers runs in a subprocess under a small file-size limit (``RLIMIT_FSIZE``, with
SIGXFSZ ignored, so a write fails with EFBIG as on a full disk). It must end in one stderr line
naming the file and the reason, exit 2, and leave the output folder exactly as it was: no
temporary file, no truncated JSON, PNG or safetensors, an existing output byte-identical. And
``--force`` replaces regular files only, never a FIFO or a device node.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from veilnet import cli, models
from veilnet.errors import OutputWriteError
from veilnet.keyed import generate_key
from veilnet.paths import atomic_write, write_text

# Imports and the data cache come first, then the limit: only the command's own writes meet it.
RUNNER = """
import resource, signal, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot, PIL.Image, safetensors.torch, torch
from veilnet import cli, data
data.load("digits", "train"), data.load("digits", "test")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2)
exec(sys.argv[2])
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("atomic")
    generate_key("block", 4, 3, 32, seed=1).save(root / "key.json")
    models.save(models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4), root / "convmixer")
    models.save(models.create("lenet", num_classes=10), root / "lenet", data="digits")
    models.save(models.create("complex-lenet", width=0.25), root / "complex", input_shape=(3, 32, 32))
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    (root / "cache").mkdir()
    return {"root": root, "key": root / "key.json", "cache": root / "cache"}


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def run_limited(world: dict[str, Path], code: str, limit: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(world["cache"]), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", RUNNER, str(limit), code], capture_output=True, text=True, env=env, timeout=600, check=False)


def fails_cleanly(world: dict[str, Path], argv: list[str], out: Path, limit: int, culprit: str) -> None:
    """``veilnet ARGV`` under the limit: exit 2, one error line naming ``culprit`` and the reason, no traceback, ``out`` unchanged."""
    before = files(out)
    proc = run_limited(world, f"sys.exit(cli.main({[str(a) for a in argv]!r}))", limit)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("veilnet: error: ")]  # beside the run's own notes
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("veilnet: error: cannot write ") and culprit in errors[0] and errors[0].endswith("File too large"), errors[0]
    assert files(out) == before


def test_key_new_keeps_the_old_key(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "k.json").write_bytes(world["key"].read_bytes())
    argv = ["key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", tmp_path / "k.json", "--force"]
    fails_cleanly(world, argv, tmp_path, 256, "k.json")


def test_train_leaves_no_partial_checkpoint(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--subset", "2", "--epochs", "1", "--model", "convmixer", "--arg", "dim=8", "--arg", "depth=1", "-o", out]
    fails_cleanly(world, argv, tmp_path, 4096, "checkpoint.pt")


def test_eval_keeps_the_old_results(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text('{"old": true}\n')
    argv = ["eval", world["root"] / "convmixer", "--data", "digits", "-o", tmp_path, "--force"]
    fails_cleanly(world, argv, tmp_path, 300, "eval.json")


def test_keyed_images_leave_no_partial_png(world: dict[str, Path], tmp_path: Path) -> None:
    argv = ["keyed", "transform-images", world["root"] / "img0.png", world["root"] / "img1.png", "--key", world["key"], "-o", tmp_path / "enc"]
    fails_cleanly(world, argv, tmp_path, 1024, "img0.png")


def test_robust_report_leaves_no_partial_json(world: dict[str, Path], tmp_path: Path) -> None:
    argv = ["robust", "evaluate", world["root"] / "lenet.safetensors", "--data", "digits", "--n-per-class", "1", "--attacks", "apgd-ce", "--draws", "2"]
    fails_cleanly(world, [*argv, "--seed", "0", "--set", "apgd-ce.steps=2", "-o", tmp_path / "r"], tmp_path, 300, "evaluation.json")


def test_complex_evaluation_keeps_the_old_file(world: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"old": true}\n')
    argv = ["complex", "evaluate", world["root"] / "complex.safetensors", "--data", "digits", "-o", tmp_path / "c.json", "--force"]
    fails_cleanly(world, argv, tmp_path, 64, "c.json")


def test_models_save_keeps_the_old_model(world: dict[str, Path], tmp_path: Path) -> None:
    models.save(models.create("lenet", num_classes=10), tmp_path / "m")
    before = files(tmp_path)
    code = f"from veilnet import models\nmodels.save(models.create('lenet', num_classes=10), {str(tmp_path / 'm')!r}, force=True)"
    proc = run_limited(world, code, 4096)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"veilnet.errors.OutputWriteError: cannot write {tmp_path / 'm.safetensors'}: File too large")
    assert files(tmp_path) == before


def test_failure_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "a.txt", "old\n")
    with pytest.raises(KeyError), atomic_write(path, "w") as fh:
        fh.write("half")
        raise KeyError("boom")
    assert files(tmp_path) == {"a.txt": b"old\n"}
    with pytest.raises(OutputWriteError, match="cannot write .*: Is a directory"):
        write_text(tmp_path, "x")
    assert files(tmp_path) == {"a.txt": b"old\n"}


def special_files(tmp_path: Path) -> list[Path]:
    """A FIFO, and a device node (a copy of /dev/null's) where we may make one."""
    os.mkfifo(tmp_path / "fifo")
    nodes = [tmp_path / "fifo"]
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        nodes.append(tmp_path / "null")
    except OSError:
        pass
    return nodes


def test_force_replaces_regular_files_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = ["key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "--force", "-o"]
    for node in special_files(tmp_path):
        kind = os.stat(node).st_mode
        assert cli.main([*key, str(node)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"cannot write {node}: it is a" in err[0] and "not a regular file" in err[0], err
        assert os.stat(node).st_mode == kind
    assert cli.main([*key, str(tmp_path / "dir" / "k.json")]) == 0
    assert cli.main([*key, str(tmp_path / "dir" / "k.json")]) == 0  # a regular file is replaced
    assert sorted(os.listdir(tmp_path / "dir")) == ["k.json"]
