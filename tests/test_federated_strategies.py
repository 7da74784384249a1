"""``--strategy`` and ``--lr-schedule``: each of Flower's strategies moves the global model by its
formula applied to the clients' models, and a round short of clients stops the run at once.

Every federation here runs on a :class:`fl_loopback.LoopbackGrid` (the real server and client
apps in this process, no Ray): 2 clients × 2 rounds of a tiny ViT on the digits, a second or two
each. The clients' models are retrained here from the same global model with the same seeds, so
the server's update is checked against the strategy's formula to float rounding.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from fl_loopback import federate
from test_federated import TRAIN, tiny
from veilnet.errors import ConfigError
from veilnet.federated import task
from veilnet.federated.task import FederatedConfig

pytest.importorskip("flwr")

#: Float32 sums in Flower's aggregation against float64 here.
ROUNDING = 1e-5
#: A ConvMixer small enough for a second per round on the digits (BatchNorm after every layer).
CONVMIXER = {"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 4}


def two_rounds(**changes: object) -> FederatedConfig:
    return tiny(**{"clients": 2, "rounds": 2, **changes})


def clients(config: FederatedConfig, state: dict[str, torch.Tensor], server_round: int, proximal_mu: float = 0.0) -> tuple[list[dict], list[int]]:
    """Each client's model after its local training of ``server_round`` from ``state``, and its n_k."""
    local, sizes = [], []
    for i in range(config.clients):
        model = task.set_weights(task.build_model(config), state)
        split = task.client_data(config, i)[0]
        task.local_train(config, model, split, server_round=server_round, partition=i, proximal_mu=proximal_mu)
        local.append({name: value.detach().clone().double() for name, value in model.state_dict().items()})
        sizes.append(len(split))
    return local, sizes


def mean(config: FederatedConfig, state: dict[str, torch.Tensor], server_round: int, proximal_mu: float = 0.0) -> dict[str, torch.Tensor]:
    """FedAvg's Σ_k (n_k / n)·w_k of the clients trained from ``state`` in ``server_round``."""
    local, sizes = clients(config, state, server_round, proximal_mu)
    return {name: sum(n / sum(sizes) * w[name] for n, w in zip(sizes, local, strict=True)) for name in local[0]}


def parameters(config: FederatedConfig) -> list[str]:
    """The trained parameters (the server's optimiser acts on these; the buffers are averaged)."""
    return [name for name, _ in task.build_model(config).named_parameters()]


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], names: list[str] | None = None, atol: float = ROUNDING) -> None:
    for name in names or list(want):
        torch.testing.assert_close(got[name].double(), want[name].double(), rtol=0, atol=atol, msg=name)


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names: list[str]) -> float:
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in names)


@pytest.fixture
def fedavg() -> list[dict[str, torch.Tensor]]:
    """FedAvg's global models (function-scoped: conftest sets torch's threads per test, and a
    float sum in another order would differ in the last bits)."""
    return federate(two_rounds())[1]


def test_fedavg_is_the_weighted_mean_of_the_clients(fedavg: list[dict[str, torch.Tensor]]) -> None:
    config = two_rounds()
    for r in (1, 2):
        assert_close(fedavg[r], mean(config, fedavg[r - 1], r))


def test_fedavgm_with_momentum_0_equals_fedavg_and_with_momentum_follows_its_formula(fedavg: list[dict[str, torch.Tensor]]) -> None:
    """Hsu et al., Sec. 3: v_t = β·v_{t−1} + (w_{t−1} − w̄_t), w_t = w_{t−1} − η·v_t (v_0 = 0)."""
    assert_close(federate(two_rounds(strategy="fedavgm", strategy_args={"server_momentum": 0.0}))[1][2], fedavg[2], atol=0)
    lr, beta = 0.5, 0.9
    config = two_rounds(strategy="fedavgm", strategy_args={"server_learning_rate": lr, "server_momentum": beta})
    _, states = federate(config)
    names = parameters(config)
    velocity: dict[str, torch.Tensor] = {}
    for r in (1, 2):
        average, before = mean(config, states[r - 1], r), states[r - 1]
        velocity = {n: beta * velocity.get(n, 0) + (before[n].double() - average[n]) for n in names}
        assert_close(states[r], {n: before[n].double() - lr * velocity[n] for n in names})
        assert_close(states[r], average, [n for n in average if n not in names])  # buffers: FedAvg's mean
    assert largest_difference(states[2], fedavg[2], names) > 100 * ROUNDING


def test_fedadam_first_step_follows_its_formula(fedavg: list[dict[str, torch.Tensor]]) -> None:
    """Reddi et al., Algorithm 2 with Flower's bias correction: Δ = w̄_1 − w_0, m = (1 − β1)·Δ,
    v = (1 − β2)·Δ², w_1 = w_0 + η·√(1 − β2²)/(1 − β1²)·m/(√v + τ)."""
    eta, b1, b2, tau = 0.05, 0.8, 0.95, 1e-3
    config = two_rounds(rounds=1, strategy="fedadam", strategy_args={"eta": eta, "beta_1": b1, "beta_2": b2, "tau": tau})
    _, states = federate(config)
    average, start, names = mean(config, states[0], 1), states[0], parameters(config)
    step = eta * math.sqrt(1 - b2**2) / (1 - b1**2)
    want = {}
    for n in names:
        delta = average[n] - start[n].double()
        want[n] = start[n].double() + step * (1 - b1) * delta / (torch.sqrt((1 - b2) * delta**2) + tau)
    assert_close(states[1], want, names)
    assert largest_difference(states[1], fedavg[1], names) > 100 * ROUNDING


def test_fedprox_with_mu_0_equals_fedavg_and_with_mu_holds_each_client_closer(fedavg: list[dict[str, torch.Tensor]]) -> None:
    """Li et al., Sec. 3: each client minimises its loss + μ/2·‖w − w_t‖²; the server averages."""
    assert_close(federate(two_rounds(strategy="fedprox", strategy_args={"proximal_mu": 0.0}))[1][2], fedavg[2], atol=0)
    mu = 1.0
    config = two_rounds(strategy="fedprox", strategy_args={"proximal_mu": mu})
    _, states = federate(config)
    for r in (1, 2):
        assert_close(states[r], mean(config, states[r - 1], r, proximal_mu=mu))
    names = parameters(config)
    free, held = clients(config, states[0], 1)[0], clients(config, states[0], 1, proximal_mu=mu)[0]
    distance = lambda w: math.sqrt(sum(float(((w[n] - states[0][n].double()) ** 2).sum()) for n in names))  # noqa: E731
    for k in range(config.clients):
        assert distance(held[k]) < 0.9 * distance(free[k])


def test_the_cosine_schedule_sets_each_rounds_learning_rate(fedavg: list[dict[str, torch.Tensor]]) -> None:
    """Round r of R trains at lr·(1 + cos(π(r − 1)/R))/2: lr, then lr/2 with R = 2."""
    config = two_rounds(lr_schedule="cosine")
    assert [config.round_lr(r) for r in (1, 2)] == pytest.approx([TRAIN.lr, TRAIN.lr / 2])
    assert [two_rounds().round_lr(r) for r in (1, 2)] == [TRAIN.lr, TRAIN.lr]
    _, states = federate(config)
    assert_close(states[1], fedavg[1], atol=0)
    halved = dataclasses.replace(two_rounds(), train=dataclasses.replace(TRAIN, lr=TRAIN.lr / 2))
    assert_close(states[2], mean(halved, states[1], 2))
    assert largest_difference(states[2], mean(two_rounds(), states[1], 2), parameters(config)) > 100 * ROUNDING


def test_fedadam_under_secagg_steps_from_the_secure_aggregate() -> None:
    """Server optimisers act on the aggregate, so they work under SecAgg+: FedAdam's first step
    from the securely summed mean differs from the plain one by at most the quantisation error
    times the step's largest slope, η'(1 − β1)/τ (|d/dΔ Δ/(b|Δ| + τ)| ≤ 1/τ)."""
    eta, b1, b2, tau = 0.05, 0.8, 0.95, 1e-3
    args = {"eta": eta, "beta_1": b1, "beta_2": b2, "tau": tau}
    plain = federate(two_rounds(rounds=1, strategy="fedadam", strategy_args=args))[1][1]
    config = two_rounds(rounds=1, strategy="fedadam", strategy_args=args, secagg=True)
    federation, states = federate(config)
    assert federation.rounds[0]["clients"] == 2
    local, sizes = clients(config, states[0], 1)
    q = [round(n * config.secagg_quantization / max(sizes)) for n in sizes]
    largest = max(float((w[n] - states[0][n].double()).abs().max()) for w in local for n in parameters(config))
    quantisation = config.clients * (2 * config.secagg_clip + largest) / sum(q)
    slope = eta * math.sqrt(1 - b2**2) / (1 - b1**2) * (1 - b1) / tau
    assert_close(states[1], plain, parameters(config), atol=slope * quantisation + ROUNDING)


def test_a_round_short_of_clients_stops_the_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 clients, all needed; client 2 fails round 1: the run stops in round 1 with one line
    naming the round, the counts and the reason, and no client trains a second round."""
    from veilnet.federated.simulation import FederationError

    local_train, rounds = task.local_train, []

    def failing(config: FederatedConfig, model: torch.nn.Module, split: object, *, server_round: int, partition: int, **kw: object) -> dict:
        rounds.append(server_round)
        if partition == 2:
            raise ConfigError("client 2 is out of disk")
        return local_train(config, model, split, server_round=server_round, partition=partition, **kw)

    monkeypatch.setattr(task, "local_train", failing)
    with pytest.raises(FederationError, match=r"^round 1: 2 of the 3 clients needed sent an update \(client 2 is out of disk\)$"):
        federate(tiny(rounds=3))
    assert rounds == [1, 1, 1]


def test_the_command_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``veilnet fl run`` (its simulation on the loopback grid): exit 2, the round's line."""
    import flwr.simulation

    from fl_loopback import run_simulation
    from veilnet import cli

    monkeypatch.setattr(flwr.simulation, "run_simulation", run_simulation)
    local_train = task.local_train

    def failing(*args: object, partition: int, **kw: object) -> dict:
        if partition == 1:
            raise ConfigError("no")
        return local_train(*args, partition=partition, **kw)

    monkeypatch.setattr(task, "local_train", failing)
    model = [a for k, v in {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64}.items() for a in ("--arg", f"{k}={v}")]
    argv = ["fl", "run", "--model", "vit", *model, "--clients", "2", "--rounds", "2", "--batch-size", "32", "--no-baseline", "-o", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "veilnet: error: round 1: 1 of the 2 clients needed sent an update (no)"


def test_strategy_names_and_settings_agree_across_the_layers() -> None:
    """The command's choices, the config's and the server app's classes name the same
    strategies; each option sets a keyword its Flower class takes."""
    import inspect

    from veilnet.federated import cli, server_app

    assert set(cli._STRATEGY_CHOICES) == set(task.STRATEGIES) == set(server_app._STRATEGIES)
    for name, settings in task.STRATEGIES.items():
        assert set(settings) <= set(inspect.signature(server_app._STRATEGIES[name]).parameters)
    for takers in cli._STRATEGY_OPTIONS.values():
        assert all(keyword in task.STRATEGIES[strategy] for strategy, keyword in takers.items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy": "fedsgd"}, "strategy must be one of fedavg, fedavgm, fedadam, fedprox"),
        ({"strategy": "fedavg", "strategy_args": {"eta": 0.1}}, "strategy fedavg takes no setting, not eta"),
        ({"strategy": "fedadam", "strategy_args": {"beta_1": 1.0}}, "beta_1 must be at least 0 and below 1"),
        ({"strategy": "fedprox", "strategy_args": {"proximal_mu": -1.0}}, "proximal_mu must be at least 0"),
        ({"lr_schedule": "step"}, "constant or cosine"),
        ({"secagg_stats_clip": 0.0}, "clipping range of the statistics must be a positive number"),
    ],
)
def test_config_refuses_bad_strategy_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny(**changes)


def test_a_server_optimiser_leaves_the_running_statistics_at_fedavgs_mean() -> None:
    """A ConvMixer under FedAdam: its BatchNorm running means and variances are the clients'
    weighted mean (they estimate the activations' moments), its weights took Adam's step."""
    config = two_rounds(rounds=1, model="convmixer", model_args=CONVMIXER, strategy="fedadam")
    _, states = federate(config)
    average, names = mean(config, states[0], 1), parameters(config)
    statistics = [n for n in average if "running" in n]
    assert statistics and max(float(average[n].abs().max()) for n in statistics if "var" in n) > 0
    assert_close(states[1], average, statistics)
    assert largest_difference(states[1], average, names) > 100 * ROUNDING
