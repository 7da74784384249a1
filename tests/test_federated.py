"""veilnet.federated: the ML of a federation (no Flower) and one simulated federation end to end.

The simulation runs once per module (3 clients, 1 round of a tiny ViT on the embedded digits,
about 30 s on 2 cores, most of it Ray starting); every check on it reads that one result.
"""

from __future__ import annotations

import dataclasses
import math
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


def test_a_clients_own_data_must_fit_the_servers_model() -> None:
    """A client with its own data builds the model from the shape and classes the server's
    config names; images of another size are refused with both shapes in one line."""
    config = task.described(tiny())
    assert config.input_shape == (3, 32, 32) and config.num_classes == 10
    assert FederatedConfig.loads(config.dumps()) == config
    train, test = task.own_data(config, "digits")
    assert len(train) > len(test) > 0
    with pytest.raises(
        ConfigError, match=r"^this client's data digits \(3×32×32 images, 10 classes\) does not fit the server's model vit \(3×16×16 images, 10 classes\)$"
    ):
        task.own_data(dataclasses.replace(config, input_shape=(3, 16, 16)), "digits")


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


class RecordingGrid:
    """A server app's Grid that keeps every reply the server receives from the clients."""

    def __init__(self, grid: Any, replies: list[Any]) -> None:
        self._grid, self.replies = grid, replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.replies += replies
        return replies

    def pull_messages(self, message_ids: Any) -> list[Any]:  # the server's hello, while it waits for the clients
        replies = list(self._grid.pull_messages(message_ids))
        self.replies += replies
        return replies


@pytest.fixture(scope="module")
def simulated_and_received(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederatedConfig, object, Path, list[Any]]:
    """The simulated federation, and every reply its server app received (through a
    :class:`RecordingGrid`; the server app runs in this process)."""
    from veilnet.federated.server_app import Federation

    received: list[Any] = []
    main = Federation.main
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Federation, "main", lambda self, grid, context: main(self, RecordingGrid(grid, received), context))
        return (*simulate(tmp_path_factory, "fl-sim", tiny()), received)


@pytest.fixture(scope="module")
def simulated(simulated_and_received: tuple[FederatedConfig, object, Path, list[Any]]) -> tuple[FederatedConfig, object, Path]:
    return simulated_and_received[:3]


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


# ---- what the server gets: never a key, nor what gives one away ----------------------------


def server_guesses(config: FederatedConfig, plain: torch.nn.Module, received: list[Any], partition: int, params: Any) -> list[Any]:
    """The server's attacks on a client's key, run on every record it received from the client
    (``received``: RecordDicts): weight matching (:mod:`veilnet.keyed.attacks.weight_matching`)
    of every array record that loads into the model against the plain integrated model the
    server holds, and the known-plaintext attack (:mod:`veilnet.keyed.attacks.known_plaintext`)
    on every array of the client's test images' shape against the plain ones (the client's
    test images are part of the server's central test set; the server cuts the same partitions).
    Returns the recovered ciphers: none when nothing it got could be attacked."""
    from veilnet.keyed.attacks import known_plaintext, weight_matching

    test = task.client_data(config, partition)[1]
    guesses = []
    for content in received:
        for record in content.array_records.values():
            arrays = record.to_torch_state_dict()
            if set(arrays) == set(plain.state_dict()):
                guesses.append(weight_matching.recover_key(task.set_weights(task.build_model(config), arrays), plain, params))
            guesses += [known_plaintext.recover_key(test.images, array, params) for array in arrays.values() if tuple(array.shape) == tuple(test.images.shape)]
    return guesses


def decrypted_fraction(guesses: list[Any], key: Any, images: torch.Tensor) -> float:
    """The largest fraction of ``images``' pixels that one of the recovered ciphers decrypts
    from their encryption under ``key`` (to half a grey level); 0 without a guess."""
    from veilnet import keyed, metrics
    from veilnet.keyed.images import apply_cipher

    x = metrics.as_float(images)
    encrypted = keyed.encrypt_images(x, key)
    return max(((apply_cipher(encrypted, g, inverse=True).clamp(0, 1) - x).abs() < 0.5 / 255).double().mean().item() for g in guesses) if guesses else 0.0


def client_reply(message_type: str, config: FederatedConfig, weights: dict[str, torch.Tensor], partition: int) -> Any:
    """The ClientApp's reply to one message laid out as the server sends it (run in this process)."""
    import time

    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict

    from veilnet.federated.client_app import app as client_app
    from veilnet.federated.messages import CONFIG, ROUND

    content = RecordDict({"arrays": ArrayRecord(weights), "config": ConfigRecord({CONFIG: config.dumps(), ROUND: 1})})
    metadata = Metadata(
        run_id=1,
        message_id=f"{message_type}-{partition}",
        src_node_id=0,
        dst_node_id=partition + 1,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=3600.0,
        message_type=message_type,
    )
    reply = client_app(
        Message(content, metadata=metadata),
        Context(run_id=1, node_id=partition + 1, node_config={"partition-id": partition}, state=RecordDict(), run_config={}),
    )
    assert not reply.has_error(), reply.error
    return reply.content


@pytest.fixture(scope="module")
def one_client() -> dict[str, Any]:
    """Client 1's answers to a round (train, evaluate) and to the keyed step, in this process so
    that the key it draws can be caught (a spy on :func:`veilnet.keyed.generate_key`), and the
    payload the keyed step used to send: the transformed model and the encrypted test images."""
    from veilnet import keyed
    from veilnet.federated.messages import KEYED

    config, partition = tiny(), 1
    plain = task.build_model(config)
    weights = task.get_weights(plain)
    real, drawn = keyed.generate_key, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keyed, "generate_key", lambda *args, **kwargs: drawn.append(real(*args, **kwargs)) or drawn[-1])
        rounds = [client_reply(kind, config, weights, partition) for kind in ("train", "evaluate")]
        assert drawn == []  # a round draws no key
        answer = client_reply(KEYED, config, weights, partition)
    fingerprint = str(answer.config_records["key"]["fingerprint"])
    key = next(k for k in drawn if k.fingerprint == fingerprint)
    test = task.client_data(config, partition)[1]
    old = {"model": task.get_weights(keyed.transform_model(plain, key)), "images": keyed.encrypt_images(test.images, key)}
    return {"config": config, "partition": partition, "plain": plain, "rounds": rounds, "answer": answer, "key": key, "drawn": drawn, "test": test, "old": old}


def test_the_keyed_answer_holds_numbers_only_and_the_servers_attacks_get_nothing(one_client: dict[str, Any]) -> None:
    """Federated ViT paper, Sec. 3: the client keeps its key, its transformed model and its
    encrypted images. Its answers to a round and to the keyed step give the server's weight
    matching and known-plaintext attacks nothing that was keyed; the round's local model (sent
    before any key existed) matched against the plain model decrypts almost no pixel."""
    from veilnet import keyed
    from veilnet.federated.messages import read_keyed_record

    c = one_client
    answer, key, params = c["answer"], c["key"], keyed.KeyParams.of(c["key"])
    assert not answer.array_records  # no transformed model, no encrypted image, no label
    assert set(answer.metric_records) == {"metrics"} and set(answer.config_records) == {"key"}
    assert dict(answer.config_records["key"]) == {"fingerprint": key.fingerprint}
    assert all(isinstance(v, int | float) or all(isinstance(a, float) for a in v) for v in answer.metric_records["metrics"].values())
    report, row = read_keyed_record(answer)
    assert report.partition == c["partition"] and report.keyed_accuracy == report.plain_accuracy and row[c["partition"]] == report.keyed_accuracy
    assert len(row) == c["config"].clients and len(c["drawn"]) == c["config"].clients  # its key and one stand-in per other client
    assert server_guesses(c["config"], c["plain"], [answer], c["partition"], params) == []
    round_guesses = server_guesses(c["config"], c["plain"], c["rounds"], c["partition"], params)
    assert len(round_guesses) == 1  # the trained local model, FedAvg's input
    assert decrypted_fraction(round_guesses, key, c["test"].images) < 0.2


def test_the_old_keyed_payload_gives_the_server_the_key(one_client: dict[str, Any]) -> None:
    """The check above can fail: on the payload the keyed step used to send (the transformed
    model with the encrypted test images) both attacks recover the key and decrypt every pixel."""
    from flwr.app import Array, ArrayRecord, RecordDict

    from veilnet import keyed

    c = one_client
    params = keyed.KeyParams.of(c["key"])
    for record in ({"model": ArrayRecord(c["old"]["model"])}, {"queries": ArrayRecord({"images": Array(c["old"]["images"].numpy())})}):
        guesses = server_guesses(c["config"], c["plain"], [RecordDict(record)], c["partition"], params)
        assert len(guesses) == 1 and decrypted_fraction(guesses, c["key"], c["test"].images) == 1.0, list(record)


def test_in_the_simulation_the_server_receives_no_keyed_tensor(simulated_and_received: tuple[FederatedConfig, object, Path, list[Any]]) -> None:
    """Every reply the simulated server app received: the keyed step's carry numbers and a
    fingerprint only (no array for the attacks above to run on); the rounds' carry the local
    models (plain, FedAvg's input, sent before any key is drawn) and metrics, no image."""
    from veilnet.federated.messages import HELLO, KEYED

    config, result, out, received = simulated_and_received
    kinds = [m.metadata.message_type for m in received]
    assert sorted(set(kinds)) == ["evaluate", HELLO, KEYED, "train"] and kinds.count(KEYED) == kinds.count(HELLO) == config.clients
    names = set(task.build_model(config).state_dict())
    for message in received:
        content, kind = message.content, message.metadata.message_type
        assert list(content.array_records) == (["arrays"] if kind == "train" else []), kind
        assert all(set(record) == names for record in content.array_records.values())
        if kind == KEYED:
            assert set(content.config_records) == {"key"} and list(content.config_records["key"]) == ["fingerprint"]
            assert all(isinstance(v, int | float) or all(isinstance(a, float) for a in v) for v in content.metric_records["metrics"].values())


# ---- a diverging federation -------------------------------------------------------------------


def test_a_keyed_answer_keeps_a_nan() -> None:
    """A NaN in a client's keyed answer reaches the server as a NaN (it used to be dropped, and
    the server's KeyedReport missed the field)."""
    from veilnet.federated.messages import keyed_record, read_keyed_record

    report = task.KeyedReport(
        partition=2, fingerprint="sha256:0", n_images=3, plain_accuracy=0.5, keyed_accuracy=0.5, max_relative_logit_difference=math.nan, labels_identical=False
    )
    back, row = read_keyed_record(keyed_record(report, [0.5, math.nan]))
    assert math.isnan(back.max_relative_logit_difference) and dataclasses.replace(back, max_relative_logit_difference=0.0) == dataclasses.replace(
        report, max_relative_logit_difference=0.0
    )
    assert row[0] == 0.5 and math.isnan(row[1])


def test_a_diverging_federation_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--optimizer sgd --lr 1e6``: the global model is not finite after round 1; the keyed step
    is skipped and the command says so in one line, exit 2, no traceback."""
    from veilnet import cli

    for name, value in flower_environment(tmp_path / "flwr-home").items():
        monkeypatch.setenv(name, value)
    model = ["--model", "vit", *(a for k, v in TINY_VIT.items() for a in ("--arg", f"{k}={v}"))]
    assert (
        cli.main(
            [
                "fl",
                "run",
                *model,
                "--clients",
                "2",
                "--rounds",
                "1",
                "--optimizer",
                "sgd",
                "--lr",
                "1e6",
                "--batch-size",
                "32",
                "--no-baseline",
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "veilnet: error: the training diverged: the global model's weights are not finite after round 1; lower --lr"
