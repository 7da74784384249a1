"""Commands under torchrun (:mod:`veilnet.distributed`, docs/distributed.md): two gloo processes
on the CPU train to the weights one process reaches with the same global batch, only rank 0
writes and prints, a resume under another number of processes is refused in one line; the
world's arithmetic (parts, environment, per-rank seeds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import veilnet
from veilnet import distributed, models
from veilnet.cli import main
from veilnet.errors import ConfigError

SRC = Path(veilnet.__file__).resolve().parents[1]


def torchrun(processes: int, argv: list[str], cwd: Path, program: tuple[str, ...] = ("-m", "veilnet")) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node processes PROGRAM ARGV`` (a free port of its own;
    the program is veilnet unless given), one thread per process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), *program, *argv]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# 100 images in global batches of 33: rank parts of 17 and 16, and a last batch of one image
# (rank 1 gets none), so a loss averaged per rank instead of over the global batch would differ.
TRAIN = ["train", "--model", "lenet", "--data", "digits", "--subset", "10", "--epochs", "1", "--batch-size", "33"]
TRAIN += ["--optimizer", "adam", "--lr", "0.003", "--label-smoothing", "0.1", "--seed", "4"]


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(tmp_path, capsys):
    assert main([*TRAIN, "-o", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    run = torchrun(2, [*TRAIN, "-o", "two"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("test accuracy") == 1, run.stdout  # rank 0 alone reports

    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    torch.manual_seed(4)
    start = models.create("lenet", num_classes=10).state_dict()
    for name, weight in one.items():
        assert torch.allclose(two[name], weight, rtol=1e-5, atol=1e-6), name
    assert max((one[k] - start[k]).abs().max().item() for k in one) > 1e-3  # it trained: the equality means something
    m1, m2 = (json.loads((tmp_path / run / "metrics.json").read_text())[0] for run in ("one", "two"))
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], rel=1e-6)
    assert m2["train_accuracy"] == m1["train_accuracy"] and m2["test_accuracy"] == m1["test_accuracy"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())

    # The checkpoint holds two processes' random states: one process may not resume it.
    assert main([*TRAIN, "--resume", "-o", str(tmp_path / "two")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by 2 processes and this run has 1 process" in err[0]


def test_two_processes_train_a_complex_network_and_its_critic_as_one_does(tmp_path):
    """Eq. 9's step shared by two ranks — counterparts on the other rank, the critic's scale and
    Eq. 8's means over the whole batch, the gradients summed — reaches one process's weights."""
    train = ["complex", "train", "--model", "complex-lenet", "--data", "digits", "--subset", "10", "--epochs", "1", "--batch-size", "33"]
    train += ["--lr", "0.003", "--seed", "4"]
    assert main([*train, "-o", str(tmp_path / "one")]) == 0
    run = torchrun(2, [*train, "-o", "two"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("model.safetensors", "discriminator.safetensors"):
        one, two = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        for key, weight in one.items():
            if name.startswith("discriminator") and key == "fc.bias":
                # Eq. 8 and the penalty do not depend on D's last bias: its gradient is rounding
                # noise, which Adam turns into steps of ±d_lr (1e-4), one per step (4 here).
                assert (two[key] - weight).abs().max() <= 4 * 1e-4 + 1e-6
                continue
            assert torch.allclose(two[key], weight, rtol=1e-5, atol=1e-6), (name, key)
    m1, m2 = (json.loads((tmp_path / run / "metrics.json").read_text())[0] for run in ("one", "two"))
    for key in ("task_loss", "adversarial_loss", "d_loss", "wasserstein", "gradient_penalty"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-5), key


def test_a_run_of_two_processes_resumes_exactly(tmp_path):
    """Stopped after its first epoch and resumed, a two-process run of a model with dropout (each
    rank its own stream, restored from the checkpoint) ends on the uninterrupted run's weights."""
    run = torchrun(2, [str(tmp_path)], tmp_path, program=(str(Path(__file__).with_name("distributed_resume.py")),))
    assert run.returncode == 0, run.stderr[-3000:]
    whole, cut = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert (
        json.loads((tmp_path / "cut" / "metrics.json").read_text()) != []
        and torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["world_size"] == 2
    )


def test_a_command_that_runs_in_one_process_refuses_torchrun(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["robust", "sweep", "m", "--radii", "1", "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["veilnet: error: veilnet robust sweep runs in one process; start it without torchrun (WORLD_SIZE=2)"]
    assert not (tmp_path / "s").exists()


def test_parts_cut_like_tensor_split_and_cover_every_item_once():
    for n in (0, 1, 5, 33):
        for size in (1, 2, 3, 7):
            parts = [distributed.World(rank, size).part(n) for rank in range(size)]
            expected = torch.tensor_split(torch.arange(n), size)
            assert [torch.arange(n)[p].tolist() for p in parts] == [e.tolist() for e in expected]


def test_the_world_comes_from_torchruns_variables():
    assert distributed.from_env({}) == distributed.World(0, 1, 0)
    assert distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == distributed.World(3, 4, 1)
    with pytest.raises(ConfigError, match="RANK=4 does not lie in a world of WORLD_SIZE=4"):
        distributed.from_env({"RANK": "4", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})
    with pytest.raises(ConfigError, match="set to integers"):
        distributed.from_env({"RANK": "0", "WORLD_SIZE": "two", "LOCAL_RANK": "0"})


def test_a_single_process_is_a_world_of_one():
    world = distributed.current()
    assert world == distributed.World() and world.main and distributed.is_main()
    assert distributed.rank_seed(7) == 7
    assert distributed.gather({"a": 1}) == [{"a": 1}] and distributed.all_sum([1, 2.5]) == [1.0, 2.5]
    assert distributed.from_main(lambda: "x") == "x"
    with distributed.session(torch.device("cpu")) as device:
        assert device == torch.device("cpu") and not torch.distributed.is_initialized()


def test_a_robust_evaluation_shared_by_two_processes_is_the_one_process_evaluation(tmp_path, capsys):
    """The ranks share the attacks (one paper-protocol attack and one adaptive attack each) and
    rank 0 merges: every number but the timings equals the single process's."""
    assert (
        main(
            [
                "train",
                "--model",
                "lenet",
                "--data",
                "digits",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--optimizer",
                "adam",
                "--lr",
                "0.003",
                "-o",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    evaluate = ["robust", "evaluate", str(tmp_path / "m"), "--attacks", "fgsm,square,deepfool,eot-pgd", "--n-per-class", "2", "--directions", "2"]
    evaluate += ["--draws", "2", "--set", "square.queries=5", "eot-pgd.steps=2", "eot-pgd.eot_samples=2", "deepfool.steps=5", "--seed", "3", "--eps", "16/255"]
    assert main([*evaluate, "-o", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    run = torchrun(2, [*evaluate, "-o", "two"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1, run.stdout  # rank 0 alone reports

    def rows(folder: str) -> dict:
        saved = json.loads((tmp_path / folder / "evaluation.json").read_text())
        for row in saved["paper"] + saved["adaptive"]:
            del row["seconds"]
        return saved

    one, two = rows("one"), rows("two")
    assert [r["attack"] for r in two["paper"]] == ["fgsm", "deepfool"] and [r["attack"] for r in two["adaptive"]] == ["square", "eot-pgd"]
    assert two == one
    assert sum(r["num_adversarial"] for r in one["paper"]) > 0 and sum(r["num_attacked"] for r in one["adaptive"]) > 0  # the rows hold results


def test_a_keyed_evaluation_shared_by_two_processes_is_the_one_process_evaluation(tmp_path, capsys):
    """The ranks share the random wrong keys (three and two of five) and merge them in order."""
    train = ["train", "--model", "convmixer", "--arg", "dim=16", "--arg", "depth=1", "--arg", "kernel_size=3", "--arg", "patch_size=4"]
    train += ["--data", "digits", "--subset", "50", "--epochs", "3", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.003", "--seed", "0"]
    assert main([*train, "-o", str(tmp_path / "cm")]) == 0  # seeded, as is the key: an unseeded run once predicted one class under every wrong key
    key = ["key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "--seed", "0", "-o", str(tmp_path / "k.json")]
    assert main(key) == 0
    evaluate = ["keyed", "evaluate", str(tmp_path / "cm"), "--key", str(tmp_path / "k.json"), "--data", "digits", "--n-per-class", "10"]
    evaluate += ["--random-keys", "5", "--seed", "2"]
    assert main([*evaluate, "-o", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    run = torchrun(2, [*evaluate, "-o", "two"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("evaluation.json") == 1, run.stdout  # rank 0 alone reports
    one, two = (json.loads((tmp_path / folder / "evaluation.json").read_text()) for folder in ("one", "two"))
    assert two == one
    assert len(set(one["random_keys"]["accuracies"])) > 1  # the keys' accuracies differ, so their order is checked
