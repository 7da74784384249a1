"""The ClientApp: one federated client's handlers, thin over :mod:`veilnet.federated.task`.

Federated ViT paper (Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption
for Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3 and 4.1: a client
trains the global model on its own images every round (``train``), reports its accuracy on its
own test images (``evaluate``) and, after the last round, keys its own copy of the integrated
model and answers with numbers only (``query.keyed``; :mod:`veilnet.federated.messages` has the
layouts). The run's config comes in every message; the partition is the node config's
``partition-id``.

With SecAgg+ (``config.secagg``), ``secaggplus_mod`` wraps the ``train`` handler (a
function-specific mod, applied only to messages that carry its ``secaggplus_configs`` record).
The mod answers the setup, key-sharing and unmasking stages itself; in the masking stage it hands
the handler the legacy ``fitins.parameters``/``fitins.config`` records and reads the legacy
``fitres.parameters``/``fitres.num_examples``/``fitres.metrics`` records from its reply
(``flwr.compat.common.recorddict_compat``), so the handler answers such a message in that
layout: the update Δ_k (:func:`~veilnet.federated.task.model_update`), never the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS as SECAGGPLUS
from flwr.compat.common import recorddict_compat as compat

from veilnet.federated import task
from veilnet.federated.messages import CONFIG, ROUND, WEIGHT, keyed_record
from veilnet.federated.task import FederatedConfig

__all__ = ["app"]

#: The ClientApp (``flwr run``'s ``clientapp = "veilnet.federated.client_app:app"``).
app = ClientApp()


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


@app.train(mods=[_secaggplus_if_asked])
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


@app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    stats = task.evaluate(model, task.client_data(config, partition)[1])
    return Message(RecordDict({"metrics": MetricRecord({**stats, "partition-id": partition})}), reply_to=msg)


@app.query("keyed")
def _keyed(msg: Message, context: Context) -> Message:
    config, partition, model = _client(msg, context)
    report, row = task.keyed_step(config, model, task.client_data(config, partition)[1], partition)
    return Message(keyed_record(report, row), reply_to=msg)
