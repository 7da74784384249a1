"""Run by tests/test_distributed.py under torchrun (not collected by pytest): into OUT/whole, a
two-epoch run of a ViT with dropout (each rank its own stream); into OUT/cut, the same run
stopped after its first epoch and resumed. The test compares the two models."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from veilnet import data, distributed, models
from veilnet.training import TrainConfig, train


class _Stop(Exception):
    pass


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("vit", image_size=32, patch_size=8, dim=16, depth=1, heads=2, mlp_dim=16, dropout=0.5)


def _stop(record: dict) -> None:
    raise _Stop


def main(out: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=33, optimizer="adam", lr=3e-3, seed=5)
    split = data.subset(data.load("digits", "train"), 10)
    with distributed.session(torch.device("cpu")):
        train(_vit(), split, out / "whole", config=config, progress=False)
        try:
            train(_vit(), split, out / "cut", config=config, on_epoch_end=_stop, progress=False)
        except _Stop:
            pass
        train(_vit(), split, out / "cut", config=config, resume=True, progress=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
