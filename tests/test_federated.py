"""veilnet.federated: the ML of a federation (no Flower) and one simulated federation end to end.

The simulation runs once per module (3 clients, 1 round of a tiny ViT on the embedded digits,
about 30 s on 2 cores, most of it Ray starting); every check on it reads that one result.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from veilnet.errors import ConfigError
from veilnet.federated import task
from veilnet.federated.task import PAPER_TRAIN, FederatedConfig

pytest.importorskip("flwr")

#: A ViT small enough for seconds per round on digits (32×32×3, patches of 8: 16 blocks).
TINY_VIT = {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64}
TRAIN = dataclasses.replace(PAPER_TRAIN, lr=0.05, batch_size=32)


def tiny(**changes: object) -> FederatedConfig:
    return FederatedConfig(**{"model": "vit", "data": "digits", "clients": 3, "rounds": 1, "model_args": TINY_VIT, "train": TRAIN, **changes})  # type: ignore[arg-type]


def flower_environment(home: Path) -> dict[str, str]:
    """The environment the federated tests run Flower under: its home in a temporary folder,
    no telemetry, no update check, Ray on loopback without usage statistics."""
    return {
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


# ---- the task module: partitions, the keyed step, config checks ----------------------------


def test_clients_partitions_are_disjoint_and_cover_the_data() -> None:
    config = tiny(clients=4, partition="dirichlet", alpha=0.3)
    train, test = task._splits(config.data, None, None, config.seed)
    parts = [task.client_data(config, i) for i in range(4)]
    assert sum(len(p[0]) for p in parts) == len(train) and sum(len(p[1]) for p in parts) == len(test)
    labels = torch.sort(torch.cat([p[0].labels for p in parts])).values
    assert torch.equal(labels, torch.sort(train.labels).values)
    with pytest.raises(ConfigError, match="partition 4 is not one"):
        task.client_data(config, 4)


def test_keyed_step_keeps_each_clients_accuracy_and_logits() -> None:
    """Eq. 14 per client: the keyed model on its encrypted images gives the plain model's logits;
    two clients get different CSPRNG keys, and one's images on the other's model are wrong."""
    config = tiny()
    model = task.build_model(config)
    task.local_train(config, model, task.client_data(config, 0)[0], server_round=1, partition=0)
    reports, transformed, encrypted, labels = [], [], [], []
    for i in range(2):
        split = task.client_data(config, i)[1]
        report, keyed_model, images = task.keyed_report(config, model, split, i)
        reports.append(report)
        transformed.append(keyed_model)
        encrypted.append(images)
        labels.append(split.labels)
        assert report.keyed_accuracy == report.plain_accuracy
        assert report.max_relative_logit_difference <= 1e-4 and report.labels_identical
        plain = task.evaluate(model, split)["accuracy"]
        assert report.plain_accuracy == pytest.approx(plain)
    assert reports[0].fingerprint != reports[1].fingerprint
    cross = task.cross_key_accuracy(transformed, encrypted, labels)
    assert cross[0][0] == reports[0].keyed_accuracy and cross[1][1] == reports[1].keyed_accuracy
    assert not torch.equal(transformed[0].patch_embed.weight, transformed[1].patch_embed.weight)


def test_local_train_weighs_by_examples_and_an_empty_client_weighs_nothing() -> None:
    config = tiny()
    model = task.build_model(config)
    split = task.client_data(config, 1)[0]
    stats = task.local_train(config, model, split.select(torch.arange(40)), server_round=1, partition=1)
    assert stats["num-examples"] == 40
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empty = task.local_train(config, model, split.select(torch.arange(0)), server_round=1, partition=1)
    assert empty["num-examples"] == 0 and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"clients": 0}, "clients must be a positive integer"),
        ({"rounds": 1.5}, "rounds must be a positive integer"),
        ({"partition": "skewed"}, "partition must be iid or dirichlet"),
        ({"alpha": 0.0}, "alpha must be positive"),
        ({"min_clients": 4}, "min clients must be between 1 and the 3 clients"),
    ],
)
def test_config_refuses_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny(**changes)


def test_config_round_trips_through_the_json_sent_to_clients() -> None:
    config = tiny(partition="dirichlet", alpha=0.25, min_clients=2, subset=5)
    assert FederatedConfig.loads(config.dumps()) == config
    assert task.key_scheme("vit") == "vit" and task.key_scheme("convmixer") == "block"
    with pytest.raises(ConfigError, match="cannot take a key"):
        task.key_scheme("lenet")


# ---- one simulated federation (Flower's simulation engine, Ray) -----------------------------


def simulate(tmp_path_factory: pytest.TempPathFactory, name: str, config: FederatedConfig, **options: Any) -> tuple[FederatedConfig, object, Path]:
    """``config`` run in Flower's simulation engine under :func:`flower_environment` (restored
    afterwards), its outputs in a fresh temporary folder: ``(config, result, output folder)``."""
    from veilnet.federated import simulation

    root = tmp_path_factory.mktemp(name)
    env = flower_environment(root / "flwr-home")
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        result = simulation.run(config, root / "out", progress=False, **options)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return config, result, root / "out"


def retrain_clients(config: FederatedConfig) -> tuple[list, list[list], list[int]]:
    """Round 1 redone here: the initial global weights, each client's weights after its local
    training from them (same seeds as the federation), and each client's number of images."""
    initial = task.get_weights(task.build_model(config))
    local, sizes = [], []
    for i in range(config.clients):
        model = task.set_weights(task.build_model(config), initial)
        split = task.client_data(config, i)[0]
        task.local_train(config, model, split, server_round=1, partition=i)
        local.append(task.get_weights(model))
        sizes.append(len(split))
    return initial, local, sizes


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederatedConfig, object, Path]:
    return simulate(tmp_path_factory, "fl-sim", tiny())


def test_simulation_averages_the_clients_models_weighted_by_examples(simulated: tuple[FederatedConfig, object, Path]) -> None:
    """FedAvg: the saved global model is Σ_k (n_k / n) w_k of the clients' local models, each
    retrained here from the same initial model with the same seeds."""
    from veilnet import models

    config, result, out = simulated
    initial, local, sizes = retrain_clients(config)
    assert len(set(sizes)) > 1 or config.clients == 1  # digits' 1437 images do not split evenly in 3
    total = sum(sizes)
    saved = models.load(out / "model").state_dict()
    for name, value in saved.items():
        expected = sum(n / total * w[name].double() for n, w in zip(sizes, local, strict=True))
        torch.testing.assert_close(value.double(), expected, rtol=1e-4, atol=1e-5, msg=name)


def test_simulation_reports_rounds_keys_cross_keys_and_the_baseline(simulated: tuple[FederatedConfig, object, Path]) -> None:
    from veilnet.federated.results import FederatedResult

    config, result, out = simulated
    for name in ("federated.json", "report.md", "rounds.png", "model.safetensors", "model.json"):
        assert (out / name).is_file(), name
    loaded = FederatedResult.load(out / "federated.json")
    assert loaded.to_dict() == result.to_dict()  # type: ignore[attr-defined]
    assert [r["round"] for r in loaded.rounds] == [1]
    record = loaded.rounds[0]
    assert record["clients"] == 3 and sorted(record["client_accuracy"], key=int) == ["0", "1", "2"]
    assert 0.0 <= record["central_accuracy"] <= 1.0 and record["seconds"] > 0
    assert [k.partition for k in loaded.keyed] == [0, 1, 2]
    assert len({k.fingerprint for k in loaded.keyed}) == 3
    for k in loaded.keyed:
        assert k.keyed_accuracy == k.plain_accuracy and k.max_relative_logit_difference <= 1e-4
    assert [row[i] for i, row in enumerate(loaded.cross_key)] == [k.keyed_accuracy for k in loaded.keyed]
    assert loaded.baseline is not None and loaded.baseline["epochs"] == config.rounds * config.local_epochs
    report = (out / "report.md").read_text()
    assert "A key per client" in report and "Cross-key" in report and "Centralised baseline" in report
