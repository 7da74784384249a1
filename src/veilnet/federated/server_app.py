"""The ServerApp: FedAvg rounds with central evaluation, then every client keys its own copy.

Federated ViT paper (Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption
for Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3.1 and 4.1: the
server integrates the clients' models with FedAvg every round (Flower's
:class:`flwr.serverapp.strategy.FedAvg`, weighted by each client's ``num-examples``) and
evaluates the integrated model centrally; after the last round each client keys its copy and the
server gets numbers only (:mod:`veilnet.federated.messages`). :class:`Federation` is the server's
side of one run; :data:`app` is the deployment's ServerApp, whose main reads the run config.

``config.strategy`` swaps FedAvg for another of Flower's Message-API strategies (FedAvgM,
FedAdam, FedProx: :data:`veilnet.federated.task.STRATEGIES`), with veilnet's round hooks mixed
in (:class:`_Rounds`): the round's failures recorded, the run stopped at once when a round falls
short of ``config.needed`` clients, the running statistics kept at FedAvg's mean.

With ``config.secagg`` the rounds run Flower's SecAgg+ instead (the server sees only the sum of
the clients' updates). Flower 1.41 offers SecAgg+ only in its legacy strategy API:
:class:`flwr.server.workflow.SecAggPlusWorkflow` as the fit workflow of a
:class:`flwr.server.workflow.DefaultWorkflow` on a :class:`flwr.server.LegacyContext` with a
legacy :class:`flwr.server.strategy.FedAvg` (:class:`_SecureFedAvg`). The workflow insists on a
LegacyContext and calls the strategy's ``configure_fit``/``aggregate_fit``, which the
Message-API strategies (``configure_train``/``aggregate_train``, their own ``start`` loop that
sends one ``train`` message per client and round) do not have, so a
:class:`flwr.serverapp.strategy.FedAvg` cannot run the protocol's four ``train`` exchanges. The
clients' evaluation still goes through the Message-API FedAvg's ``configure_evaluate``/
``aggregate_evaluate`` to the same ``evaluate`` handler.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from veilnet.errors import ConfigError, VeilnetError
from veilnet.federated import task
from veilnet.federated.errors import round_short
from veilnet.federated.messages import CLIENTS, CONFIG, HELLO, KEYED, MAX_WEIGHT, WEIGHT, read_keyed_record
from veilnet.federated.task import FederatedConfig, KeyedReport
from veilnet.progress import bar

__all__ = ["EVENTS", "ROUNDS_LOG", "STATE", "WEIGHTS", "Federation", "app"]

#: In the deployment's output folder: one JSON record per finished round, appended as it ends.
ROUNDS_LOG = "rounds.jsonl"
#: In the run config's ``state`` folder: what the server measured, and the final global weights.
STATE, WEIGHTS = "state.json", "weights.safetensors"
#: In the ``state`` folder: what happens while the server waits for its clients, one JSON line
#: each (``connected`` of ``clients``, a ``refused`` client's reason, the run's ``error``).
EVENTS = "events.jsonl"


class Federation:
    """The server side of one run: the clients admitted, FedAvg rounds with central evaluation,
    then the keyed step.

    Before the rounds every client that connects is asked whether its images fit the model
    (:data:`~veilnet.federated.messages.HELLO`); the rounds run with the first
    ``config.clients`` that answer yes (``on_wait`` hears each change: ``{"connected": k,
    "clients": n}``, or ``{"refused": reason}``). A client with its own data gets an index no
    partition-holding client has (:data:`~veilnet.federated.messages.CLIENTS`).

    ``main(grid, context)`` is a ServerApp main; what it measured stays on the object:
    ``rounds`` (one record per round: train loss, central accuracy and loss, per-client accuracy,
    clients that answered, seconds, the clients' summed local training seconds), ``keyed``
    (:class:`KeyedReport` per client), ``cross_key`` and ``weights`` (the final global state).
    """

    def __init__(
        self,
        config: FederatedConfig,
        *,
        progress: bool = True,
        wait_seconds: float = 120.0,
        timeout: float = 3600.0,
        on_round: Callable[[dict[str, Any]], None] | None = None,
        on_wait: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = task.described(config)
        self.progress, self.wait_seconds, self.timeout, self.on_round, self.on_wait = progress, wait_seconds, timeout, on_round, on_wait
        self.clients: dict[int, int] = {}  # node id -> the client's index (its partition, or one given it)
        self.max_weight = 0  # max_k n_k of the admitted clients
        self.rounds: list[dict[str, Any]] = []
        self.keyed: list[KeyedReport] = []
        self.cross_key: list[list[float]] = []
        self.weights: dict[str, torch.Tensor] | None = None
        self.initial_accuracy = math.nan
        self._current: dict[str, Any] = {}
        self._bar: Any = None
        self._clock = 0.0

    # ---- the ServerApp main ----------------------------------------------------------------

    def main(self, grid: Grid, context: Context) -> None:
        config = self.config
        model = task.build_model(config)
        self._test = task.central_test(config)
        self._model = model
        grid = self._admit(grid)
        self._bar = bar(desc=f"fl run: {config.rounds} rounds of {config.clients} clients", total=config.rounds, unit="round", enabled=self.progress)
        try:
            strategy = _strategy(
                self,
                fraction_train=1.0,
                fraction_evaluate=1.0,
                min_train_nodes=config.needed,
                min_evaluate_nodes=config.needed,
                min_available_nodes=config.needed,
                train_metrics_aggr_fn=self._record_metrics(self._train_metrics),
                evaluate_metrics_aggr_fn=self._record_metrics(self._client_metrics),
            )
            rounds = self._secure_rounds if config.secagg else self._plain_rounds
            self.weights = rounds(grid, context, strategy, task.get_weights(model))
        finally:
            self._bar.close()
        if config.model in ("vit", "convmixer") and task.is_finite(self.weights):  # a diverged model is reported by check_complete
            self._keyed_step(grid, ArrayRecord(self.weights))

    def _plain_rounds(self, grid: Grid, context: Context, strategy: FedAvg, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Message-API strategy's own loop: train, the clients' evaluation, the central one."""
        record = ConfigRecord(self._record())
        central = lambda server_round, arrays: MetricRecord(self._central(server_round, arrays.to_torch_state_dict()))  # noqa: E731
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial),
            num_rounds=self.config.rounds,
            timeout=self.timeout,
            train_config=record,
            evaluate_config=ConfigRecord(dict(record)),
            evaluate_fn=central,
        )
        return self.typed(result.arrays.to_torch_state_dict())

    def _secure_rounds(self, grid: Grid, context: Context, strategy: FedAvg, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same rounds with SecAgg+: Flower's legacy DefaultWorkflow with SecAggPlusWorkflow
        as its fit step and :class:`_SecureFedAvg`, which asks the Message-API ``strategy`` for
        each round's train config (``configure_train``: the round, FedProx's μ) and hands it the
        securely aggregated mean model as every client's answer (``aggregate_train``: the
        server's step, FedAvgM's or FedAdam's, on FedAvg's mean). ``strategy`` also sends the
        clients' evaluation, run first in the central evaluation hook so that a round's record
        is built in the same order as :meth:`_plain_rounds` (train, clients, central)."""
        config, names = self.config, list(initial)

        def evaluate(server_round: int, arrays: list[np.ndarray], _: dict[str, Any]) -> tuple[float, dict[str, float]]:
            state = {name: torch.from_numpy(np.array(a, copy=True)) for name, a in zip(names, arrays, strict=True)}
            if server_round > 0:
                record = ConfigRecord(self._record())
                strategy.aggregate_evaluate(
                    server_round, grid.send_and_receive(strategy.configure_evaluate(server_round, ArrayRecord(state), record, grid), timeout=self.timeout)
                )
            stats = self._central(server_round, state)
            return stats["loss"], {"accuracy": stats["accuracy"]}

        def fit_config(server_round: int) -> dict[str, Any]:
            messages = strategy.configure_train(server_round, ArrayRecord(secure_fedavg.state), ConfigRecord(self._record()), grid)
            return {**next(iter(messages)).content.config_records["config"], MAX_WEIGHT: self.max_weight}

        secure_fedavg = _SecureFedAvg(
            self,
            strategy,
            initial,
            task.secagg_scales(config, self._model),
            fraction_fit=1.0,
            fraction_evaluate=0.0,  # the clients' evaluation runs in ``evaluate``
            min_fit_clients=config.needed,
            min_available_clients=config.needed,
            on_fit_config_fn=fit_config,
            evaluate_fn=evaluate,
        )
        secaggplus = _SecAggPlus(
            self,
            num_shares=1.0,  # every client shares its secrets with all the others
            reconstruction_threshold=config.secagg_threshold,
            max_weight=float(self.max_weight),
            clipping_range=float(config.secagg_clip),
            quantization_range=config.secagg_quantization,
            modulus_range=task.SECAGG_MODULUS,
            timeout=self.timeout,
        )
        legacy_context = LegacyContext(context, config=ServerConfig(num_rounds=config.rounds), strategy=secure_fedavg)
        DefaultWorkflow(fit_workflow=secaggplus)(grid, legacy_context)
        return secure_fedavg.state

    def typed(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` in the model's dtypes (an averaged integer buffer comes back as a float)."""
        own = self._model.state_dict()
        return {name: state[name].to(own[name].dtype) for name in own}

    def statistics(self) -> set[str]:
        """The names of the model's buffers (running statistics, batch counters)."""
        return {name for name, _ in self._model.named_buffers()}

    def failed(self, reasons: list[str]) -> None:
        """The clients that failed the current round so far, each as its error's last line (a
        round that gets no update counts 0 clients). An empty list keeps what a SecAgg+ stage
        recorded (the strategy then sees the surviving clients only)."""
        self._current["failures"] = reasons or self._current.get("failures", [])
        self._current.setdefault("clients", 0)

    def check_answers(self, answered: int) -> None:
        """FederationError at once when ``answered`` clients' updates fall short of
        ``config.needed`` in the current round: the run stops there, not after its last round."""
        if answered < self.config.needed:
            self.halted(answered)

    def halted(self, answered: int) -> None:
        """Stop the run: the current round ended with ``answered`` clients' updates."""
        raise round_short(len(self.rounds) + 1, answered, self.config.needed, self._current.get("failures", []))

    def _record(self) -> dict[str, str]:
        """What every message of the rounds carries: the config and the clients' indices."""
        return {CONFIG: self.config.dumps(), CLIENTS: json.dumps({str(node): index for node, index in self.clients.items()})}

    def _admit(self, grid: Grid) -> Grid:
        """Ask every client that connects whether its images fit (:data:`HELLO`) until
        ``config.clients`` have said yes, within ``wait_seconds`` (ConfigError otherwise); give
        each client with its own data an index no partition holds; the grid the rounds use,
        which shows them the admitted clients only."""
        config, content = self.config, RecordDict({"config": ConfigRecord({CONFIG: self.config.dumps()})})
        asked: dict[str, int] = {}  # hello message id -> node id
        answers: dict[int, tuple[int, int]] = {}  # node id -> (partition or -1, n_k)
        refused: set[int] = set()
        deadline, told = time.monotonic() + self.wait_seconds, -1
        while len(answers) < config.clients:
            new = [node for node in grid.get_node_ids() if node not in asked.values()]
            if new:
                asked.update(zip(grid.push_messages([Message(content=content, message_type=HELLO, dst_node_id=node) for node in new]), new, strict=True))
            for reply in grid.pull_messages([m for m, node in asked.items() if node not in answers and node not in refused]):
                node, metrics = asked[reply.metadata.reply_to_message_id], {} if reply.has_error() else reply.content.metric_records["metrics"]
                partition = int(metrics.get("partition", -1))
                if reply.has_error() or (partition >= 0 and partition in (p for p, _ in answers.values())):
                    refused.add(node)
                    reason = _reason(reply.error.reason) if reply.has_error() else f"a second client with partition {partition}"
                    self._wait_event({"refused": reason})
                elif len(answers) < config.clients:
                    answers[node] = (partition, int(metrics[WEIGHT]))
            if len(answers) != told:
                told = len(answers)
                self._wait_event({"connected": told, "clients": config.clients})
            if len(answers) < config.clients and time.monotonic() > deadline:
                raise ConfigError(
                    f"only {len(answers)} of {config.clients} clients connected within {self.wait_seconds:g} s"
                    + (f" ({len(refused)} refused)" if refused else "")
                )
            time.sleep(0.2)
        free = iter(sorted(set(range(config.clients)) - {p for p, _ in answers.values()}))
        self.clients = {node: partition if partition >= 0 else next(free) for node, (partition, _) in sorted(answers.items())}
        self.max_weight = max(n for _, n in answers.values())
        self._clock = time.perf_counter()
        return _Admitted(grid, set(self.clients))

    def _wait_event(self, event: dict[str, Any]) -> None:
        if self.on_wait is not None:
            self.on_wait(event)

    # ---- FedAvg's hooks: per-client metrics, central evaluation ------------------------------

    @staticmethod
    def _record_metrics(hook: Callable[[list[dict[str, Any]], str], dict[str, float]]) -> Callable[[list[RecordDict], str], MetricRecord]:
        """A Message-API FedAvg metrics hook: each reply's metrics as a dict, into ``hook``."""
        return lambda records, weight_key: MetricRecord(hook([dict(next(iter(r.metric_records.values()))) for r in records], weight_key))

    def _train_metrics(self, clients: list[dict[str, Any]], weight_key: str) -> dict[str, float]:
        self._current["clients"] = len(clients)
        self._current["local_train_seconds"] = sum(float(c["train_seconds"]) for c in clients)
        self._current["threads"] = max(int(c.get("threads", 0)) for c in clients)
        self._current["client_train_loss"] = {int(c["partition-id"]): float(c["train_loss"]) for c in clients}
        loss = _weighted(clients, "train_loss", weight_key)
        self._current["train_loss"] = loss
        return {"train_loss": loss}

    def _client_metrics(self, clients: list[dict[str, Any]], weight_key: str) -> dict[str, float]:
        self._current["client_accuracy"] = {int(c["partition-id"]): float(c["accuracy"]) for c in clients}
        accuracy = _weighted(clients, "accuracy", weight_key)
        self._current["client_mean_accuracy"] = accuracy
        return {"accuracy": accuracy}

    def _central(self, server_round: int, state: dict[str, torch.Tensor]) -> dict[str, float]:
        task.set_weights(self._model, state)
        stats = task.evaluate(self._model, self._test)
        if server_round == 0:
            self.initial_accuracy = stats["accuracy"]
            return {"accuracy": stats["accuracy"], "loss": stats["loss"]}
        now = time.perf_counter()
        record = {"round": server_round, "central_accuracy": stats["accuracy"], "central_loss": stats["loss"], **self._current, "seconds": now - self._clock}
        self._clock, self._current = now, {}
        self.rounds.append(record)
        self._bar.set_postfix(accuracy=f"{stats['accuracy']:.4f}", loss=f"{record.get('train_loss', math.nan):.3f}")
        self._bar.update(1)
        if self.on_round is not None:
            self.on_round(record)
        return {"accuracy": stats["accuracy"], "loss": stats["loss"]}

    # ---- after the last round: a key per client -----------------------------------------------

    def _keyed_step(self, grid: Grid, final: ArrayRecord) -> None:
        """Every client keys its own copy of the final model and answers with numbers only
        (:func:`~veilnet.federated.messages.keyed_record`); the cross-key matrix is their rows,
        cut to the clients that answered."""
        content = RecordDict({"arrays": final, "config": ConfigRecord(self._record())})
        messages = [Message(content=content, message_type=KEYED, dst_node_id=node) for node in grid.get_node_ids()]
        answers = sorted(
            (read_keyed_record(m.content) for m in grid.send_and_receive(messages, timeout=self.timeout) if not m.has_error()),
            key=lambda answer: answer[0].partition,
        )
        self.keyed = [report for report, _ in answers]
        self.cross_key = [[row[k.partition] for k in self.keyed] for _, row in answers]


class _Admitted:
    """A Grid that shows only the admitted clients (``get_node_ids``); the rest is ``grid``'s."""

    def __init__(self, grid: Grid, nodes: set[int]) -> None:
        self._grid, self._nodes = grid, nodes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        return [node for node in self._grid.get_node_ids() if node in self._nodes]


#: ``--strategy`` → Flower's Message-API strategy (:data:`veilnet.federated.task.STRATEGIES`).
_STRATEGIES: dict[str, type[FedAvg]] = {"fedavg": FedAvg, "fedavgm": FedAvgM, "fedadam": FedAdam, "fedprox": FedProx}


class _Rounds:
    """What veilnet adds to any of Flower's Message-API strategies (a mixin before it, so its
    ``aggregate_train`` wraps the strategy's): the round's failed clients recorded, the run
    stopped at once when fewer than ``config.needed`` clients answered, and the running
    statistics (the model's buffers) set to FedAvg's weighted mean of the clients' — a
    server optimiser (FedAvgM's momentum, FedAdam's normalised step) acts on the trained
    parameters only: a running variance is an estimate of the activations' variance, not a
    weight, and an Adam step of ±η on it would not track the clients'."""

    def __init__(self, federation: Federation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        replies = list(replies)
        answered = [m.content for m in replies if not m.has_error()]
        self.federation.failed([_reason(m.error.reason) for m in replies if m.has_error()])
        self.federation.check_answers(len(answered))
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        mean = aggregate_arrayrecords(answered, WEIGHT)
        for name in self.federation.statistics():
            arrays[name] = mean[name]
        return arrays, metrics


def _strategy(federation: Federation, **kwargs: Any) -> FedAvg:
    """``config.strategy``'s Flower class with :class:`_Rounds` mixed in, given ``kwargs`` and
    ``config.strategy_args``."""
    base = _STRATEGIES[federation.config.strategy]
    return type(f"Veilnet{base.__name__}", (_Rounds, base), {})(federation, **kwargs, **federation.config.strategy_args)


class _SecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, recording the clients that failed a stage: when too few are
    left the workflow halts the round before the strategy sees any result, and the run stops
    there with the round's counts and reasons (a client refusing an update beyond the
    clipping range, say)."""

    def __init__(self, federation: Federation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation

    def _failed(self, going_on: bool, state: Any) -> bool:
        self.federation.failed([_reason(str(getattr(f.args[0], "reason", f)) if f.args else str(f)) for f in state.failures])
        if not going_on:
            self.federation.halted(len(state.active_node_ids))
        return going_on

    def setup_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().setup_stage(grid, context, state), state)

    def share_keys_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().share_keys_stage(grid, context, state), state)

    def collect_masked_vectors_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().collect_masked_vectors_stage(grid, context, state), state)

    def unmask_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().unmask_stage(grid, context, state), state)


class _SecureFedAvg(legacy.FedAvg):
    """Flower's legacy FedAvg behind SecAgg+, handing the round to the Message-API
    ``strategy``: every result it gets carries the same unmasked aggregate, the clients' mean
    update Σ_k q_k·Δ_k / Σ_k q_k (:func:`task.model_update`), so w̄ = w_t + Δ̄ (unscaled by
    :func:`task.secagg_scales`) is FedAvg's Σ_k (n_k / n)·w_k; each client's answer becomes a
    reply carrying w̄ with its own metrics and n_k, and ``strategy.aggregate_train`` makes the
    server's step from them (FedAvg: w̄ itself). ``state`` is the global model after the last
    round. (A round's failures are recorded by :class:`_SecAggPlus`.)"""

    def __init__(self, federation: Federation, strategy: FedAvg, initial: dict[str, torch.Tensor], scales: dict[str, float], **kwargs: Any) -> None:
        super().__init__(initial_parameters=ndarrays_to_parameters([v.numpy() for v in initial.values()]), **kwargs)
        self.federation, self.strategy, self.scales, self.state = federation, strategy, scales, dict(initial)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.federation.check_answers(len(results))
        mean = ArrayRecord(task.apply_update(self.state, parameters_to_ndarrays(results[0][1].parameters), self.scales))
        answer = lambda fit: RecordDict({"arrays": mean, "metrics": MetricRecord({**fit.metrics, WEIGHT: fit.num_examples})})  # noqa: E731
        replies = [Message(answer(fit), dst_node_id=0, message_type=MessageType.TRAIN) for _, fit in results]
        arrays, _ = self.strategy.aggregate_train(server_round, replies)
        self.state = self.federation.typed(arrays.to_torch_state_dict())
        return ndarrays_to_parameters([v.numpy() for v in self.state.values()]), {}


def _reason(text: str) -> str:
    """The last line of a failed client's error (Flower prefixes the ClientApp's exception with
    the Ray actor's traceback in simulation), its message alone where a deployment's SuperNode
    wrapped it as ``<class 'NAME'>:<'MESSAGE'>``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    wrapped = re.fullmatch(r"<class '[^']*'>:<'(.*)'>", last)
    return wrapped.group(1) if wrapped else last


def _weighted(clients: list[dict[str, Any]], name: str, weight_key: str) -> float:
    """Σ n_k·v_k / Σ n_k over the clients with examples."""
    pairs = [(float(c[weight_key]), float(c[name])) for c in clients if float(c[weight_key]) > 0]
    total = sum(n for n, _ in pairs)
    return sum(n * v for n, v in pairs) / total if total else math.nan


#: The deployment's ServerApp (``flwr run``'s ``serverapp = "veilnet.federated.server_app:app"``).
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The deployment's server: the run config names the FederatedConfig (``config``, JSON), the
    output folder (each round appended to its ``rounds.jsonl``), the private ``state`` folder
    (the final state, read by :func:`veilnet.federated.deployment.run_server`), the seconds to
    wait for the clients (``wait``) and a round's timeout (``timeout``). While it waits for the
    clients, and when it fails, it appends to the state folder's :data:`EVENTS`."""
    from safetensors.torch import save

    from veilnet.paths import write_bytes, write_text

    run_config = context.run_config
    config = FederatedConfig.loads(str(run_config["config"]))
    state = Path(str(run_config["state"]))

    def appender(path: Path) -> Callable[[dict[str, Any]], None]:
        def append(record: dict[str, Any]) -> None:
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")

        return append

    federation = Federation(
        config,
        progress=False,
        wait_seconds=float(run_config["wait"]),
        timeout=float(run_config["timeout"]),
        on_round=appender(Path(str(run_config["output"])) / ROUNDS_LOG),
        on_wait=appender(state / EVENTS),
    )
    try:
        federation.main(grid, context)
    except VeilnetError as exc:  # the command says why in one line
        appender(state / EVENTS)({"error": str(exc)})
        raise
    write_bytes(state / WEIGHTS, save({k: v.contiguous() for k, v in (federation.weights or {}).items()}))
    doc = {
        "rounds": federation.rounds,
        "keyed": [k.to_dict() for k in federation.keyed],
        "cross_key": federation.cross_key,
        "initial_accuracy": federation.initial_accuracy,
    }
    write_text(state / STATE, json.dumps(doc))
