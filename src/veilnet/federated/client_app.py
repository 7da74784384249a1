"""The ClientApp: one federated client's handlers, thin over :mod:`veilnet.federated.task`.

Federated ViT paper (Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption
for Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3 and 4.1: a client
trains the global model on its own images every round (``train``), reports its accuracy on its
own test images (``evaluate``) and, after the last round, keys its own copy of the integrated
model and answers with numbers only (``query.keyed``; :mod:`veilnet.federated.messages` has the
layouts). Before the rounds it answers the server's ``query.hello``: whether its images fit the
model, and how many it has. The run's config comes in every message.

A node's config (``flower-supernode --node-config``) names its images: ``partition-id`` (a
partition of the server's data set, :func:`~veilnet.federated.task.client_data`) or ``data``
(a data spec of its own, :func:`~veilnet.federated.task.own_data`; the server then gives it an
index among the clients). With ``events`` (a file path; ``veilnet fl client`` sets it) each
handler appends what it did as a JSON line (round, loss, accuracy, or the reason it refused):
the command prints them, since the handlers run in processes Flower starts.

With SecAgg+ (``config.secagg``), ``secaggplus_mod`` wraps the ``train`` handler (a
function-specific mod, applied only to messages that carry its ``secaggplus_configs`` record).
The mod answers the setup, key-sharing and unmasking stages itself; in the masking stage it hands
the handler the legacy ``fitins.parameters``/``fitins.config`` records and reads the legacy
``fitres.parameters``/``fitres.num_examples``/``fitres.metrics`` records from its reply
(``flwr.compat.common.recorddict_compat``), so the handler answers such a message in that
layout: the update Δ_k (:func:`~veilnet.federated.task.model_update`, the running statistics'
scaled into the clipping range by :func:`~veilnet.federated.task.secagg_scales`), never the
weights.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS as SECAGGPLUS
from flwr.compat.common import recorddict_compat as compat

from veilnet.data import ImageSplit
from veilnet.errors import VeilnetError
from veilnet.federated import task
from veilnet.federated.messages import CLIENTS, CONFIG, HELLO, KEYED, MAX_WEIGHT, PROXIMAL_MU, ROUND, WEIGHT, hello_record, keyed_record
from veilnet.federated.task import FederatedConfig

__all__ = ["app"]

#: The ClientApp (``flwr run``'s ``clientapp = "veilnet.federated.client_app:app"``).
app = ClientApp()


#: Node config entries: this client's own data spec, and the file its handlers append events to.
DATA, EVENTS = "data", "events"


def _images(config: FederatedConfig, context: Context) -> tuple[int, ImageSplit, ImageSplit]:
    """This node's partition (−1 with its own data) and its training and test images."""
    spec = context.node_config.get(DATA)
    if spec:
        return -1, *task.own_data(config, str(spec))
    partition = int(context.node_config.get("partition-id", -1))
    return partition, *task.client_data(config, partition)


def _index(record: Mapping[str, Any], context: Context, partition: int) -> int:
    """This client's index among the clients: its partition, or the one the server gave it."""
    return partition if partition >= 0 else int(json.loads(str(record[CLIENTS]))[str(context.node_id)])


def _tell(context: Context, event: dict[str, Any]) -> None:
    """Append ``event`` to the node's events file, when it names one."""
    path = context.node_config.get(EVENTS)
    if path:
        with open(str(path), "a") as f:
            f.write(json.dumps(event) + "\n")


def _reported(handler: Callable[[Message, Context], Message]) -> Callable[[Message, Context], Message]:
    """``handler``, telling the events file the reason when it refuses (a VeilnetError; Flower
    sends the server the error)."""

    @functools.wraps(handler)
    def wrapper(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except VeilnetError as exc:
            _tell(context, {"event": "refused", "message": msg.metadata.message_type, "reason": str(exc)})
            raise

    return wrapper


def _client(msg: Message, context: Context) -> tuple[FederatedConfig, int, ImageSplit, ImageSplit, torch.nn.Module]:
    """The run's config, this client's index, its images and the global model the message carries."""
    record = msg.content.config_records["config"]
    config = FederatedConfig.loads(str(record[CONFIG]))
    partition, train, test = _images(config, context)
    model = task.set_weights(task.build_model(config), msg.content.array_records["arrays"].to_torch_state_dict())
    return config, _index(record, context, partition), train, test, model


def _local_round(config: FederatedConfig, index: int, model: torch.nn.Module, split: ImageSplit, record: Mapping[str, Any], context: Context) -> dict[str, Any]:
    """One round of local training on this client's images, the round and FedProx's μ read from
    the round's config ``record`` (:data:`ROUND`; Flower's FedProx sends :data:`PROXIMAL_MU`);
    its metrics with its index."""
    server_round = int(record.get(ROUND, 0))
    stats = task.local_train(config, model, split, server_round=server_round, partition=index, proximal_mu=float(record.get(PROXIMAL_MU, 0.0)))
    _tell(context, {"event": "train", "round": server_round, "images": len(split), "loss": stats["train_loss"]})
    return {**stats, "partition-id": index}


@app.query(HELLO.removeprefix("query."))
@_reported
def _hello(msg: Message, context: Context) -> Message:
    config = FederatedConfig.loads(str(msg.content.config_records["config"][CONFIG]))
    partition, train, test = _images(config, context)
    _tell(context, {"event": "connected", "train": len(train), "test": len(test)})
    return Message(hello_record(partition, len(train), len(test)), reply_to=msg)


def _secaggplus_if_asked(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Flower's ``secaggplus_mod`` for the ``train`` messages of a SecAgg+ round (they carry its
    config record); plain FedAvg's ``train`` messages go straight to the handler."""
    if SECAGGPLUS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


@app.train(mods=[_secaggplus_if_asked])
@_reported
def _train(msg: Message, context: Context) -> Message:
    if "fitins.parameters" in msg.content.array_records:  # SecAgg+'s masking stage
        return _secure_train(msg, context)
    config, index, train, _, model = _client(msg, context)
    metrics = _local_round(config, index, model, train, msg.content.config_records["config"], context)
    return Message(RecordDict({"arrays": ArrayRecord(task.get_weights(model)), "metrics": MetricRecord(metrics)}), reply_to=msg)


def _secure_train(msg: Message, context: Context) -> Message:
    """SecAgg+'s masking stage (inside ``secaggplus_mod``): the legacy FitIns in, the update
    Δ_k = w_k − w_t and n_k out as a legacy FitRes, which the mod quantises and masks."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = FederatedConfig.loads(str(fitins.config[CONFIG]))
    partition, train, _ = _images(config, context)
    model = task.build_model(config)
    before = {name: torch.from_numpy(np.array(a, copy=True)) for name, a in zip(model.state_dict(), parameters_to_ndarrays(fitins.parameters), strict=True)}
    task.set_weights(model, before)
    metrics = _local_round(config, _index(fitins.config, context, partition), model, train, fitins.config, context)
    update = task.model_update(before, task.get_weights(model), task.secagg_scales(config, model))
    task.check_secagg_range(config, model, update, int(metrics[WEIGHT]), int(fitins.config[MAX_WEIGHT]))
    fitres = FitRes(status=Status(Code.OK, "ok"), parameters=ndarrays_to_parameters(update), num_examples=int(metrics[WEIGHT]), metrics=metrics)
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


@app.evaluate()
@_reported
def _evaluate(msg: Message, context: Context) -> Message:
    config, index, _, test, model = _client(msg, context)
    stats = task.evaluate(model, test)
    _tell(context, {"event": "evaluate", "round": int(msg.content.config_records["config"].get(ROUND, 0)), "images": len(test), "accuracy": stats["accuracy"]})
    return Message(RecordDict({"metrics": MetricRecord({**stats, "partition-id": index})}), reply_to=msg)


@app.query(KEYED.removeprefix("query."))
@_reported
def _keyed(msg: Message, context: Context) -> Message:
    config, index, _, test, model = _client(msg, context)
    report, row = task.keyed_step(config, model, test, index)
    _tell(context, {"event": "keyed", "images": report.n_images, "keyed": report.keyed_accuracy, "plain": report.plain_accuracy})
    return Message(keyed_record(report, row), reply_to=msg)
