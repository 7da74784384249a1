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
  its test images and answers with its :class:`~veilnet.federated.task.KeyedReport`, the
  transformed model and the encrypted images with their labels — what a provider serving that
  client's transformed model sees anyway (plus the labels, for measuring only). The server uses
  them for the cross-key matrix: client i's encrypted images on client j's model.

Secure aggregation is not here yet: Flower 1.41 has SecAgg+ only as a workflow of its legacy
strategy API (``SecAggPlusWorkflow`` inside a ``DefaultWorkflow`` on a ``LegacyContext``, with
the client's ``secaggplus_mod``, which reads every ``train`` message's ``secaggplus`` config and
the legacy ``fitres`` layout), not for the Message-API strategies used here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
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

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# ClientApp
# ------------------------------------------------------------------------------------------

client_app = ClientApp()


def _client(msg: Message, context: Context) -> tuple[FederatedConfig, int, torch.nn.Module]:
    """The run's config, this node's partition and the global model the message carries."""
    config = FederatedConfig.loads(str(msg.content.config_records["config"][CONFIG]))
    partition = int(context.node_config.get("partition-id", -1))
    model = task.build_model(config)
    task.set_weights(model, msg.content.array_records["arrays"].to_torch_state_dict())
    return config, partition, model


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    stats = task.local_train(config, model, task.client_data(config, partition)[0], server_round=int(msg.content.config_records["config"].get("server-round", 0)), partition=partition)
    content = RecordDict({"arrays": ArrayRecord(task.get_weights(model)), "metrics": MetricRecord({**stats, "partition-id": partition})})
    return Message(content, reply_to=msg)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    stats = task.evaluate(model, task.client_data(config, partition)[1])
    return Message(RecordDict({"metrics": MetricRecord({**stats, "partition-id": partition})}), reply_to=msg)


@client_app.query("keyed")
def _keyed(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    split = task.client_data(config, partition)[1]
    report, transformed, encrypted = task.keyed_report(config, model, split, partition)
    numbers = {k: float(v) if isinstance(v, float) else int(v) for k, v in report.to_dict().items() if k != "fingerprint" and v is not None}
    content = RecordDict(
        {
            "metrics": MetricRecord(numbers),
            "key": ConfigRecord({"fingerprint": report.fingerprint}),
            "model": ArrayRecord(task.get_weights(transformed)),
            "queries": ArrayRecord({"images": Array(encrypted.numpy()), "labels": Array(split.labels.numpy())}),
        }
    )
    return Message(content, reply_to=msg)


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
            initial = ArrayRecord(task.get_weights(model))
            strategy = _FedAvg(self, fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=config.needed, min_evaluate_nodes=config.needed, min_available_nodes=config.needed, train_metrics_aggr_fn=self._train_metrics, evaluate_metrics_aggr_fn=self._client_metrics)
            record = ConfigRecord({CONFIG: config.dumps()})
            result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=config.rounds, timeout=self.timeout, train_config=record, evaluate_config=ConfigRecord(dict(record)), evaluate_fn=self._central)
            final = result.arrays
        finally:
            self._bar.close()
        self.weights = final.to_torch_state_dict()
        if config.model in ("vit", "convmixer"):
            self._keyed_step(grid, final)

    def _wait_for_clients(self, grid: Grid) -> None:
        """Wait until every client has connected (the first round starts with all of them)."""
        deadline = time.monotonic() + self.wait_seconds
        while len(list(grid.get_node_ids())) < self.config.clients:
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(list(grid.get_node_ids()))} of {self.config.clients} clients connected within {self.wait_seconds:.0f} s")
            time.sleep(0.2)
        self._clock = time.perf_counter()

    # ---- FedAvg's hooks: per-client metrics, central evaluation ------------------------------

    def _train_metrics(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        clients = [dict(next(iter(r.metric_records.values()))) for r in records]
        self._current["clients"] = len(clients)
        self._current["local_train_seconds"] = sum(float(c["train_seconds"]) for c in clients)
        self._current["threads"] = max(int(c.get("threads", 0)) for c in clients)
        self._current["client_train_loss"] = {int(c["partition-id"]): float(c["train_loss"]) for c in clients}
        loss = _weighted(clients, "train_loss", weight_key)
        self._current["train_loss"] = loss
        return MetricRecord({"train_loss": loss})

    def _client_metrics(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        clients = [dict(next(iter(r.metric_records.values()))) for r in records]
        self._current["client_accuracy"] = {int(c["partition-id"]): float(c["accuracy"]) for c in clients}
        accuracy = _weighted(clients, "accuracy", weight_key)
        self._current["client_mean_accuracy"] = accuracy
        return MetricRecord({"accuracy": accuracy})

    def _central(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        task.set_weights(self._model, arrays.to_torch_state_dict())
        stats = task.evaluate(self._model, self._test)
        if server_round == 0:
            self.initial_accuracy = stats["accuracy"]
            return MetricRecord({"accuracy": stats["accuracy"], "loss": stats["loss"]})
        now = time.perf_counter()
        record = {"round": server_round, "central_accuracy": stats["accuracy"], "central_loss": stats["loss"], **self._current, "seconds": now - self._clock}
        self._clock, self._current = now, {}
        self.rounds.append(record)
        self._bar.set_postfix(accuracy=f"{stats['accuracy']:.4f}", loss=f"{record.get('train_loss', math.nan):.3f}")
        self._bar.update(1)
        if self.on_round is not None:
            self.on_round(record)
        return MetricRecord({"accuracy": stats["accuracy"], "loss": stats["loss"]})

    # ---- after the last round: a key per client -----------------------------------------------

    def _keyed_step(self, grid: Grid, final: ArrayRecord) -> None:
        content = RecordDict({"arrays": final, "config": ConfigRecord({CONFIG: self.config.dumps()})})
        messages = [Message(content=content, message_type=KEYED, dst_node_id=node) for node in grid.get_node_ids()]
        replies = [m for m in grid.send_and_receive(messages, timeout=self.timeout) if not m.has_error()]
        replies.sort(key=lambda m: int(m.content.metric_records["metrics"]["partition"]))
        models, images, labels = [], [], []
        for reply in replies:
            numbers = dict(reply.content.metric_records["metrics"])
            fingerprint = str(reply.content.config_records["key"]["fingerprint"])
            self.keyed.append(KeyedReport.from_dict({**numbers, "fingerprint": fingerprint, "partition": int(numbers["partition"]), "n_images": int(numbers["n_images"]), "labels_identical": bool(numbers["labels_identical"])}))
            transformed = task.build_model(self.config)
            models.append(task.set_weights(transformed, reply.content.array_records["model"].to_torch_state_dict()))
            queries = reply.content.array_records["queries"]
            images.append(torch.from_numpy(np.array(queries["images"].numpy(), copy=True)))
            labels.append(torch.from_numpy(np.array(queries["labels"].numpy(), copy=True)))
        self.cross_key = task.cross_key_accuracy(models, images, labels)


class _FedAvg(FedAvg):
    """Flower's FedAvg, recording the error of every client that failed a round."""

    def __init__(self, federation: Federation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.federation = federation

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        replies = list(replies)
        self.federation._current["failures"] = [m.error.reason for m in replies if m.has_error()]
        self.federation._current.setdefault("clients", 0)
        return super().aggregate_train(server_round, replies)


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
