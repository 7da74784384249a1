"""The Flower apps (Message API): a thin ClientApp and the server's main loop.

Federated ViT paper (Nagamori & Kiya), Sec. 3.1 and 4.1: clients train on their own images,
the server integrates the models with FedAvg every round (Flower's
:class:`flwr.serverapp.strategy.FedAvg`, weighted by each client's ``num-examples``) and
evaluates the integrated model centrally; after the last round every client keys its copy.

Messages (every one carries the run's :class:`~veilnet.federated.task.FederatedConfig` as JSON
in ``config["veilnet"]``; a client's partition is its node config's ``partition-id``):

* ``train``: the global weights in, the client's weights and ``num-examples`` out.
* ``evaluate``: the global weights in, the client's accuracy on its own test images out.
* ``query.keyed``: the final weights in; the client draws its key, transforms its copy, encrypts
  its test images and measures (:func:`~veilnet.federated.task.keyed_step`), and answers with
  numbers only: its :class:`~veilnet.federated.task.KeyedReport` without the fingerprint and its
  row of the cross-key matrix in ``metrics``, the key's fingerprint in ``key``. The key, the
  transformed model and the encrypted images stay on the client (the ViT paper's Sec. 3: each
  client keeps its transformed copy): the server holds the plain integrated model, and with a
  transformed model it would recover the key by weight matching, with encrypted images of its
  central test set by a known-plaintext attack (:mod:`veilnet.keyed.attacks`).

With ``config.secagg`` the rounds run Flower's SecAgg+ instead (the server sees only the sum of
the clients' updates). Flower 1.41 offers SecAgg+ only in its legacy strategy API, so that path
is legacy on both sides of ``train`` while everything else stays as above:

* server: :class:`flwr.server.workflow.SecAggPlusWorkflow` as the fit workflow of a
  :class:`flwr.server.workflow.DefaultWorkflow` on a :class:`flwr.server.LegacyContext` with a
  legacy :class:`flwr.server.strategy.FedAvg` (:class:`_SecureFedAvg`). The workflow insists
  on a LegacyContext and calls the strategy's ``configure_fit``/``aggregate_fit``, which the
  Message-API strategies (``configure_train``/``aggregate_train``, their own ``start`` loop
  that sends one ``train`` message per client and round) do not have, so a
  :class:`flwr.serverapp.strategy.FedAvg` cannot run the protocol's four ``train`` exchanges.
  The clients' evaluation still goes through the Message-API FedAvg's ``configure_evaluate``/
  ``aggregate_evaluate`` to the same ``evaluate`` handler;
* client: ``secaggplus_mod`` wraps the ``train`` handler (a function-specific mod, applied only
  to messages that carry its ``secaggplus_configs`` record). The mod answers the setup,
  key-sharing and unmasking stages itself; in the masking stage it hands the handler the
  legacy ``fitins.parameters``/``fitins.config`` records and reads the legacy
  ``fitres.parameters``/``fitres.num_examples``/``fitres.metrics`` records from its reply
  (``flwr.compat.common.recorddict_compat``), so the handler answers such a message in that
  layout: the update Δ_k (:func:`~veilnet.federated.task.model_update`), never the weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS as SECAGGPLUS
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from tqdm.auto import tqdm

from veilnet.errors import ConfigError
from veilnet.federated import task
from veilnet.federated.task import FederatedConfig, KeyedReport

__all__ = ["Federation", "client_app", "server_app"]

#: Name of the ConfigRecord entry that holds the run's FederatedConfig as JSON.
CONFIG = "veilnet"
#: Message type of the final keyed step.
KEYED = "query.keyed"
#: Metric entry of a keyed answer with the client's row of the cross-key matrix.
CROSS_KEY = "cross_key"
#: Config entry with the round number (the Message-API FedAvg's name for it).
ROUND = "server-round"
#: Metric entry with a client's n_k, FedAvg's weight.
WEIGHT = "num-examples"

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# ClientApp
# ------------------------------------------------------------------------------------------

client_app = ClientApp()


def _client(msg: Message, context: Context) -> tuple[FederatedConfig, int, torch.nn.Module]:
    """The run's config, this node's partition and the global model the message carries."""
    config = FederatedConfig.loads(str(msg.content.config_records["config"][CONFIG]))
    return config, _partition(context), task.set_weights(task.build_model(config), msg.content.array_records["arrays"].to_torch_state_dict())


def _partition(context: Context) -> int:
    return int(context.node_config.get("partition-id", -1))


def _local_round(config: FederatedConfig, partition: int, model: torch.nn.Module, server_round: int) -> dict[str, Any]:
    """One round of local training on this client's images; its metrics with the partition."""
    stats = task.local_train(config, model, task.client_data(config, partition)[0], server_round=server_round, partition=partition)
    return {**stats, "partition-id": partition}


def _secaggplus_if_asked(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Flower's ``secaggplus_mod`` for the ``train`` messages of a SecAgg+ round (they carry its
    config record); plain FedAvg's ``train`` messages go straight to the handler."""
    if SECAGGPLUS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


@client_app.train(mods=[_secaggplus_if_asked])
def _train(msg: Message, context: Context) -> Message:
    if "fitins.parameters" in msg.content.array_records:  # SecAgg+'s masking stage
        return _secure_train(msg, context)
    config, partition, model = _client(msg, context)
    metrics = _local_round(config, partition, model, int(msg.content.config_records["config"].get(ROUND, 0)))
    return Message(RecordDict({"arrays": ArrayRecord(task.get_weights(model)), "metrics": MetricRecord(metrics)}), reply_to=msg)


def _secure_train(msg: Message, context: Context) -> Message:
    """SecAgg+'s masking stage (inside ``secaggplus_mod``): the legacy FitIns in, the update
    Δ_k = w_k − w_t and n_k out as a legacy FitRes, which the mod quantises and masks."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = FederatedConfig.loads(str(fitins.config[CONFIG]))
    model = task.build_model(config)
    before = {name: torch.from_numpy(np.array(a, copy=True)) for name, a in zip(model.state_dict(), parameters_to_ndarrays(fitins.parameters), strict=True)}
    task.set_weights(model, before)
    metrics = _local_round(config, _partition(context), model, int(fitins.config[ROUND]))
    update = task.model_update(before, task.get_weights(model))
    task.check_secagg_range(config, update, int(metrics[WEIGHT]))
    fitres = FitRes(status=Status(Code.OK, "ok"), parameters=ndarrays_to_parameters(update), num_examples=int(metrics[WEIGHT]), metrics=metrics)
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    stats = task.evaluate(model, task.client_data(config, partition)[1])
    return Message(RecordDict({"metrics": MetricRecord({**stats, "partition-id": partition})}), reply_to=msg)


@client_app.query("keyed")
def _keyed(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    report, row = task.keyed_step(config, model, task.client_data(config, partition)[1], partition)
    return Message(keyed_record(report, row), reply_to=msg)


def keyed_record(report: KeyedReport, cross_key: list[float]) -> RecordDict:
    """A client's answer to the keyed step, numbers only: the report's fields (NaN kept, the
    bool as 0/1) and its cross-key row in ``metrics``, the key's fingerprint in ``key``."""
    numbers = {name: float(value) if isinstance(value, float) else int(value) for name, value in dataclasses.asdict(report).items() if name != "fingerprint"}
    return RecordDict({"metrics": MetricRecord({**numbers, CROSS_KEY: [float(a) for a in cross_key]}), "key": ConfigRecord({"fingerprint": report.fingerprint})})


def read_keyed_record(content: RecordDict) -> tuple[KeyedReport, list[float]]:
    """The report and cross-key row of :func:`keyed_record`."""
    numbers = dict(content.metric_records["metrics"])
    row = [float(a) for a in numbers.pop(CROSS_KEY)]
    fields = {**numbers, "fingerprint": str(content.config_records["key"]["fingerprint"]), "partition": int(numbers["partition"]), "n_images": int(numbers["n_images"]), "labels_identical": bool(numbers["labels_identical"])}
    return KeyedReport.from_dict(fields), row


# ------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------


class Federation:
    """The server side of one run: FedAvg rounds with central evaluation, then the keyed step.

    ``main(grid, context)`` is a ServerApp main; what it measured stays on the object:
    ``rounds`` (one record per round: train loss, central accuracy and loss, per-client accuracy,
    clients that answered, seconds, the clients' summed local training seconds), ``keyed``
    (:class:`KeyedReport` per client), ``cross_key`` and ``weights`` (the final global state).
    """

    def __init__(self, config: FederatedConfig, *, progress: bool = True, wait_seconds: float = 120.0, timeout: float = 3600.0, on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config, self.progress, self.wait_seconds, self.timeout, self.on_round = config, progress, wait_seconds, timeout, on_round
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
        self._wait_for_clients(grid)
        self._bar = tqdm(total=config.rounds, desc="federated rounds", unit="round", disable=not self.progress)
        try:
            strategy = _FedAvg(self, fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=config.needed, min_evaluate_nodes=config.needed, min_available_nodes=config.needed, train_metrics_aggr_fn=self._record_metrics(self._train_metrics), evaluate_metrics_aggr_fn=self._record_metrics(self._client_metrics))
            rounds = self._secure_rounds if config.secagg else self._plain_rounds
            self.weights = rounds(grid, context, strategy, task.get_weights(model))
        finally:
            self._bar.close()
        if config.model in ("vit", "convmixer") and task.is_finite(self.weights):  # a diverged model is reported by check_complete
            self._keyed_step(grid, ArrayRecord(self.weights))

    def _plain_rounds(self, grid: Grid, context: Context, strategy: FedAvg, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Message-API FedAvg's own loop: train, the clients' evaluation, the central one."""
        record = ConfigRecord({CONFIG: self.config.dumps()})
        central = lambda server_round, arrays: MetricRecord(self._central(server_round, arrays.to_torch_state_dict()))  # noqa: E731
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=self.config.rounds, timeout=self.timeout, train_config=record, evaluate_config=ConfigRecord(dict(record)), evaluate_fn=central)
        return result.arrays.to_torch_state_dict()

    def _secure_rounds(self, grid: Grid, context: Context, strategy: FedAvg, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same rounds with SecAgg+: Flower's legacy DefaultWorkflow with SecAggPlusWorkflow
        as its fit step and :class:`_SecureFedAvg`; the Message-API ``strategy`` still sends the
        clients' evaluation, run first in the central evaluation hook so that a round's record
        is built in the same order as :meth:`_plain_rounds` (train, clients, central)."""
        config, names = self.config, list(initial)

        def evaluate(server_round: int, arrays: list[np.ndarray], _: dict[str, Any]) -> tuple[float, dict[str, float]]:
            state = {name: torch.from_numpy(np.array(a, copy=True)) for name, a in zip(names, arrays, strict=True)}
            if server_round > 0:
                record = ConfigRecord({CONFIG: config.dumps()})
                strategy.aggregate_evaluate(server_round, grid.send_and_receive(strategy.configure_evaluate(server_round, ArrayRecord(state), record, grid), timeout=self.timeout))
            stats = self._central(server_round, state)
            return stats["loss"], {"accuracy": stats["accuracy"]}

        secure_fedavg = _SecureFedAvg(
            self,
            initial,
            fraction_fit=1.0,
            fraction_evaluate=0.0,  # the clients' evaluation runs in ``evaluate``
            min_fit_clients=config.needed,
            min_available_clients=config.needed,
            on_fit_config_fn=lambda server_round: {CONFIG: config.dumps(), ROUND: server_round},
            fit_metrics_aggregation_fn=lambda pairs: self._train_metrics([dict(metrics) for _, metrics in pairs], WEIGHT),
            evaluate_fn=evaluate,
        )
        secaggplus = _SecAggPlus(
            self,
            num_shares=1.0,  # every client shares its secrets with all the others
            reconstruction_threshold=config.secagg_threshold,
            max_weight=float(task.secagg_max_weight(config)),
            clipping_range=float(config.secagg_clip),
            quantization_range=config.secagg_quantization,
            modulus_range=task.SECAGG_MODULUS,
            timeout=self.timeout,
        )
        legacy_context = LegacyContext(context, config=ServerConfig(num_rounds=config.rounds), strategy=secure_fedavg)
        DefaultWorkflow(fit_workflow=secaggplus)(grid, legacy_context)
        return secure_fedavg.state

    def _wait_for_clients(self, grid: Grid) -> None:
        """Wait until every client has connected (the first round starts with all of them)."""
        deadline = time.monotonic() + self.wait_seconds
        while len(list(grid.get_node_ids())) < self.config.clients:
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(list(grid.get_node_ids()))} of {self.config.clients} clients connected within {self.wait_seconds:.0f} s")
            time.sleep(0.2)
        self._clock = time.perf_counter()

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
        (:func:`keyed_record`); the cross-key matrix is their rows, cut to the clients that
        answered."""
        content = RecordDict({"arrays": final, "config": ConfigRecord({CONFIG: self.config.dumps()})})
        messages = [Message(content=content, message_type=KEYED, dst_node_id=node) for node in grid.get_node_ids()]
        answers = sorted((read_keyed_record(m.content) for m in grid.send_and_receive(messages, timeout=self.timeout) if not m.has_error()), key=lambda answer: answer[0].partition)
        self.keyed = [report for report, _ in answers]
        self.cross_key = [[row[k.partition] for k in self.keyed] for _, row in answers]


class _FedAvg(FedAvg):
    """Flower's FedAvg, recording the error of every client that failed a round."""

    def __init__(self, federation: Federation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        replies = list(replies)
        self.federation._current["failures"] = [_reason(m.error.reason) for m in replies if m.has_error()]
        self.federation._current.setdefault("clients", 0)
        return super().aggregate_train(server_round, replies)


class _SecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, recording the clients that failed a stage: when too few are
    left the workflow stops the round before the strategy sees any result, and the round's
    record still says why (a client refusing an update beyond the clipping range, say)."""

    def __init__(self, federation: Federation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation

    def _failed(self, going_on: bool, state: Any) -> bool:
        self.federation._current["failures"] = [_reason(str(getattr(f.args[0], "reason", f)) if f.args else str(f)) for f in state.failures]
        return going_on

    def setup_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().setup_stage(grid, context, state), state)

    def share_keys_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().share_keys_stage(grid, context, state), state)

    def collect_masked_vectors_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        return self._failed(super().collect_masked_vectors_stage(grid, context, state), state)


class _SecureFedAvg(legacy.FedAvg):
    """Flower's legacy FedAvg behind SecAgg+: every result it gets carries the same unmasked
    aggregate, the clients' mean update Σ_k q_k·Δ_k / Σ_k q_k (:func:`task.model_update`), so
    its average is that aggregate; this adds it to the global model (w_{t+1} = w_t + Δ̄, which
    is FedAvg's Σ_k (n_k / n)·w_k). ``state`` is the global model after the last round."""

    def __init__(self, federation: Federation, initial: dict[str, torch.Tensor], **kwargs: Any) -> None:
        super().__init__(initial_parameters=ndarrays_to_parameters([v.numpy() for v in initial.values()]), **kwargs)
        self.federation, self.state = federation, dict(initial)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.federation._current.setdefault("clients", 0)
        aggregated, metrics = super().aggregate_fit(server_round, results, failures)
        if aggregated is None:
            return None, metrics
        self.state = task.apply_update(self.state, parameters_to_ndarrays(aggregated))
        return ndarrays_to_parameters([v.numpy() for v in self.state.values()]), metrics


def _reason(text: str) -> str:
    """The last line of a failed client's error (Flower prefixes the ClientApp's exception with
    the Ray actor's traceback in simulation)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _weighted(clients: list[dict[str, Any]], name: str, weight_key: str) -> float:
    """Σ n_k·v_k / Σ n_k over the clients with examples."""
    pairs = [(float(c[weight_key]), float(c[name])) for c in clients if float(c[weight_key]) > 0]
    total = sum(n for n, _ in pairs)
    return sum(n * v for n, v in pairs) / total if total else math.nan


# ------------------------------------------------------------------------------------------
# The deployment's ServerApp: the config and the output folder come from the run config
# ------------------------------------------------------------------------------------------

server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    from veilnet.federated import deployment

    deployment.serve(grid, context)
