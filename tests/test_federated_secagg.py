"""Secure aggregation (Flower's SecAgg+) in the simulation engine: the aggregate equals FedAvg's.

One simulated federation (3 clients with Dirichlet-skewed partitions, 1 round of a tiny ViT,
no baseline; this file takes 45–60 s on the shared 2-core machine at load 3–7, most of it Ray
starting and the three clients retrained) with a coarse quantisation
(2^16 levels, clipping range ±2), so that the quantisation error is well above the float noise
of retraining the clients here and the bound of :func:`veilnet.federated.task.model_update`
is what is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_federated import retrain_clients, simulate, tiny
from veilnet.errors import ConfigError
from veilnet.federated import task
from veilnet.federated.task import FederatedConfig

pytest.importorskip("flwr")

#: Coarse enough that the quantisation error dominates retraining noise, fine enough to train.
CLIP, LEVELS = 2.0, 2**16
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
    config = secure(model="convmixer", model_args={"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 4})
    before = task.get_weights(task.build_model(config))
    torch.manual_seed(0)
    after = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v + 7 for k, v in before.items()}
    update = task.model_update(before, after)
    assert len(update) == sum(v.is_floating_point() for v in before.values()) < len(before)
    restored = task.apply_update(before, update)
    for name, value in after.items():
        expected = value if value.is_floating_point() else before[name]
        torch.testing.assert_close(restored[name], expected, rtol=0, atol=1e-6, msg=name)
    n = len(task.client_data(config, 0)[0])
    task.check_secagg_range(config, update, n, n)
    with pytest.raises(ConfigError, match="exceeds the SecAgg\\+ clipping range ±0.001"):
        task.check_secagg_range(secure(secagg_clip=1e-3), update, n, n)


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
    updates = [task.model_update(initial, weights) for weights in local]
    n, w = sum(sizes), max(sizes)  # W = max_k n_k, from the clients' answers when they connect
    q = [round(n_k * LEVELS / w) for n_k in sizes]
    largest = max(float(abs(u).max()) for update in updates for u in update)
    bound = config.clients * (2 * CLIP + largest) / sum(q) + RETRAIN_TOLERANCE
    fedavg = task.apply_update(
        initial, [sum(n_k / n * update[i].astype("float64") for n_k, update in zip(sizes, updates, strict=True)) for i in range(len(updates[0]))]
    )
    saved = models.load(out / "model").state_dict()
    error = max(float((saved[name].double() - fedavg[name].double()).abs().max()) for name in saved)
    assert error <= bound, (error, bound)
    assert error > bound / 20, (error, bound)
    unweighted = task.apply_update(initial, [sum(update[i].astype("float64") for update in updates) / len(updates) for i in range(len(updates[0]))])
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
