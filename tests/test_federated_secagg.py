"""Secure aggregation (Flower's SecAgg+) in the simulation engine: the aggregate equals FedAvg's.

One simulated federation (3 clients with Dirichlet-skewed partitions, 1 round of a tiny ViT,
no baseline; this file takes 45–60 s on the shared 2-core machine at load 3–7, most of it Ray
starting and the three clients retrained) with a coarse quantisation
(2^16 levels, clipping range ±2), so that the quantisation error is well above the float noise
of retraining the clients here and the bound of :func:`veilnet.federated.task.model_update`
is what is checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from test_federated import TRAIN, retrain_clients, simulate, tiny
from veilnet.errors import ConfigError
from veilnet.federated import task
from veilnet.federated.task import FederatedConfig

pytest.importorskip("flwr")

#: Coarse enough that the quantisation error dominates retraining noise, fine enough to train.
CLIP, LEVELS = 2.0, 2**16
#: A ConvMixer small enough for a second per round on the digits (BatchNorm after every layer).
CONVMIXER = {"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 4}
#: Float noise between a client's training in a Ray actor and its retraining in this process
#: (different thread counts sum in another order), and float32 rounding of the saved weights.
RETRAIN_TOLERANCE = 1e-5


def secure(**changes: object) -> FederatedConfig:
    return tiny(**{"partition": "dirichlet", "alpha": 0.5, "secagg": True, "secagg_clip": CLIP, "secagg_quantization": LEVELS, **changes})


def test_secagg_config_needs_two_clients_and_a_majority_per_round() -> None:
    assert secure().secagg_threshold == 2 and secure(clients=10, min_clients=6).secagg_threshold == 6
    with pytest.raises(ConfigError, match="at least 2 clients"):
        secure(clients=1)
    with pytest.raises(ConfigError, match="min clients must be at least 6 of 10"):
        secure(clients=10, min_clients=5)
    with pytest.raises(ConfigError, match="quantisation range"):
        secure(secagg_quantization=2**31)  # 3 clients' sum would wrap modulo 2^32


def test_update_round_trip_and_range_check() -> None:
    """w + Δ gives the trained weights back; an update beyond the clipping range is refused.
    A model with BatchNorm: its integer batch counter is not sent and keeps the global value."""
    config = secure(model="convmixer", model_args=CONVMIXER)
    model = task.build_model(config)
    before = {k: v.clone() for k, v in task.get_weights(model).items()}
    torch.manual_seed(0)
    after = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v + 7 for k, v in before.items()}
    scales = task.secagg_scales(config, model)
    assert {name for name, s in scales.items() if s != 1} == {name for name, v in model.named_buffers() if v.is_floating_point()}
    update = task.model_update(before, after, scales)
    assert len(update) == sum(v.is_floating_point() for v in before.values()) < len(before)
    restored = task.apply_update(before, update, scales)
    for name, value in after.items():
        expected = value if value.is_floating_point() else before[name]
        torch.testing.assert_close(restored[name], expected, rtol=0, atol=1e-6, msg=name)
    n = len(task.client_data(config, 0)[0])
    task.check_secagg_range(config, model, update, n, n)
    with pytest.raises(ConfigError, match="^this client's update exceeds the SecAgg\\+ clipping range ±0.001 .*--secagg-clip$"):
        small = secure(secagg_clip=1e-3)
        task.check_secagg_range(small, model, task.model_update(before, after, task.secagg_scales(small, model)), n, n)
    after["embed_bn.running_var"] = before["embed_bn.running_var"] + 20  # a variance moving by 20 in a round fits c_s = 1024
    task.check_secagg_range(config, model, task.model_update(before, after, scales), n, n)
    with pytest.raises(ConfigError, match="^this client's running statistics exceed the SecAgg\\+ clipping range ±10 of the statistics .*--secagg-stats-clip$"):
        tight = secure(secagg_stats_clip=10.0)
        task.check_secagg_range(tight, model, task.model_update(before, after, task.secagg_scales(tight, model)), n, n)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederatedConfig, object, Path]:
    return simulate(tmp_path_factory, "fl-secagg", secure(), baseline=False)


def test_secagg_aggregate_equals_fedavg_within_the_quantisation_error(simulated: tuple[FederatedConfig, object, Path]) -> None:
    """The saved model is w_0 + SecAgg+'s aggregate of the updates; FedAvg's is
    w_0 + Σ_k (n_k / n)·Δ_k with each client's Δ_k retrained here from the same seeds. They
    differ by at most N·(2c + max|Δ|) / Σ_k q_k, q_k = round(n_k·T / W), and by more than a
    twentieth of that: the aggregate went through SecAgg+'s quantiser, not a plain average."""
    from veilnet import models

    config, result, out = simulated
    initial, local, sizes = retrain_clients(config)
    scales = task.secagg_scales(config, task.build_model(config))
    updates = [task.model_update(initial, weights, scales) for weights in local]
    n, w = sum(sizes), max(sizes)  # W = max_k n_k, from the clients' answers when they connect
    q = [round(n_k * LEVELS / w) for n_k in sizes]
    largest = max(float(abs(u).max()) for update in updates for u in update)
    bound = config.clients * (2 * CLIP + largest) / sum(q) + RETRAIN_TOLERANCE
    fedavg = task.apply_update(
        initial, [sum(n_k / n * update[i].astype("float64") for n_k, update in zip(sizes, updates, strict=True)) for i in range(len(updates[0]))], scales
    )
    saved = models.load(out / "model").state_dict()
    error = max(float((saved[name].double() - fedavg[name].double()).abs().max()) for name in saved)
    assert error <= bound, (error, bound)
    assert error > bound / 20, (error, bound)
    unweighted = task.apply_update(initial, [sum(update[i].astype("float64") for update in updates) / len(updates) for i in range(len(updates[0]))], scales)
    assert max(float((unweighted[k].double() - fedavg[k].double()).abs().max()) for k in saved) > 10 * bound  # the weighting is tested
    assert len(set(sizes)) == config.clients


def test_secagg_run_keeps_the_rounds_metrics_and_the_keyed_step(simulated: tuple[FederatedConfig, object, Path]) -> None:
    from veilnet.federated.results import FederatedResult

    config, result, out = simulated
    loaded = FederatedResult.load(out / "federated.json")
    assert loaded.config.secagg and loaded.config.secagg_clip == CLIP
    record = loaded.rounds[0]
    assert record["clients"] == 3 and record["failures"] == [] and sorted(record["client_accuracy"], key=int) == ["0", "1", "2"]
    assert 0.0 <= record["central_accuracy"] <= 1.0 and record["train_loss"] > 0
    assert [k.partition for k in loaded.keyed] == [0, 1, 2]
    assert all(k.keyed_accuracy == k.plain_accuracy for k in loaded.keyed)
    assert "SecAgg+" in (out / "report.md").read_text()


# ---- BatchNorm's running statistics under SecAgg+ (a loopback federation, no Ray) ------------

#: The ConvMixer's local learning rate at which its running variances pass the weights'
#: clipping range ±8 in one round on the digits, while its weights move by less than 1.
BN_LR = 0.2


def batchnorm(**changes: object) -> FederatedConfig:
    train = dataclasses.replace(TRAIN, lr=BN_LR)
    return tiny(**{"model": "convmixer", "model_args": CONVMIXER, "clients": 2, "train": train, "secagg": True, **changes})


def test_running_variances_beyond_the_clip_are_aggregated_like_fedavg() -> None:
    """A ConvMixer federation with SecAgg+ whose running variance ends above 8 (the weights'
    clipping range) completes; its statistics equal FedAvg's mean of the clients' within
    N·(2c_s + max|Δ|) / Σq and its weights within N·(2c + max|Δ|) / Σq
    (:func:`veilnet.federated.task.secagg_scales`)."""
    from fl_loopback import federate

    config = batchnorm()
    federation, states = federate(config)
    assert federation.rounds[0]["clients"] == 2 and federation.rounds[0]["failures"] == []
    initial, local, sizes = retrain_clients(config)
    statistics = [name for name in initial if "running" in name]
    weights = [name for name, value in initial.items() if value.is_floating_point() and name not in statistics]
    assert max(float(w[name].max()) for w in local for name in statistics if "var" in name) > config.secagg_clip
    q = [round(n_k * config.secagg_quantization / max(sizes)) for n_k in sizes]
    for names, clip in ((statistics, config.secagg_stats_clip), (weights, config.secagg_clip)):
        largest = max(float((w[name] - initial[name]).abs().max()) for w in local for name in names)
        bound = config.clients * (2 * clip + largest) / sum(q) + RETRAIN_TOLERANCE
        fedavg = {name: sum(n_k / sum(sizes) * w[name].double() for n_k, w in zip(sizes, local, strict=True)) for name in names}
        error = max(float((states[1][name].double() - fedavg[name]).abs().max()) for name in names)
        assert error <= bound, (names[0], error, bound)


def test_a_round_whose_clients_all_refuse_stops_the_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With c_s too small every client refuses round 1's masked update; SecAgg+ halts, and the
    run stops in round 1 of 3 with one line naming the counts and the option to raise: no
    client trains again."""
    from fl_loopback import federate
    from veilnet.federated.simulation import FederationError

    trained, local_train = [], task.local_train
    monkeypatch.setattr(task, "local_train", lambda *args, **kw: trained.append(kw["server_round"]) or local_train(*args, **kw))
    with pytest.raises(
        FederationError, match=r"^round 1: 0 of the 2 clients needed sent an update \(this client's running statistics exceed .*--secagg-stats-clip\)$"
    ):
        federate(batchnorm(rounds=3, secagg_stats_clip=1.0))
    assert trained == [1, 1]
