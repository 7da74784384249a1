"""The messages between veilnet's ServerApp and ClientApp (Flower's Message API).

Federated ViT paper (Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption
for Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3.1 and 4.1: clients
train on their own images, the server integrates the models with FedAvg every round and
evaluates the integrated model centrally; after the last round every client keys its own copy.

Every message from the server carries the run's :class:`~veilnet.federated.task.FederatedConfig`
as JSON in ``config[CONFIG]``; a client's partition is its node config's ``partition-id``:

* ``train``: the global weights in, the client's weights and ``num-examples`` out (with SecAgg+,
  the update in Flower's legacy layout instead: :mod:`veilnet.federated.client_app`).
* ``evaluate``: the global weights in, the client's accuracy on its own test images out.
* ``query.keyed``: the final weights in; the client draws its key, transforms its copy, encrypts
  its test images and measures (:func:`~veilnet.federated.task.keyed_step`), and answers with
  numbers only (:func:`keyed_record`). The key, the transformed model and the encrypted images
  stay on the client (the paper's Sec. 3: each client keeps its transformed copy): the server
  holds the plain integrated model, and with a transformed model it would recover the key by
  weight matching, with encrypted images of its central test set by a known-plaintext attack
  (:mod:`veilnet.keyed.attacks`).
"""

from __future__ import annotations

import dataclasses

from flwr.app import ConfigRecord, MetricRecord, RecordDict

from veilnet.federated.task import KeyedReport

__all__ = ["CONFIG", "CROSS_KEY", "KEYED", "ROUND", "WEIGHT", "keyed_record", "read_keyed_record"]

#: Name of the ConfigRecord entry that holds the run's FederatedConfig as JSON.
CONFIG = "veilnet"
#: Message type of the final keyed step.
KEYED = "query.keyed"
#: Config entry with the round number (the Message-API FedAvg's name for it).
ROUND = "server-round"
#: Metric entry with a client's n_k, FedAvg's weight.
WEIGHT = "num-examples"
#: Metric entry of a keyed answer with the client's row of the cross-key matrix.
CROSS_KEY = "cross_key"


def keyed_record(report: KeyedReport, cross_key: list[float]) -> RecordDict:
    """A client's answer to the keyed step, numbers only: the report's fields (NaN kept, the
    bool as 0/1) and its cross-key row in ``metrics``, the key's fingerprint in ``key``."""
    numbers = {name: float(value) if isinstance(value, float) else int(value) for name, value in dataclasses.asdict(report).items() if name != "fingerprint"}
    return RecordDict(
        {"metrics": MetricRecord({**numbers, CROSS_KEY: [float(a) for a in cross_key]}), "key": ConfigRecord({"fingerprint": report.fingerprint})}
    )


def read_keyed_record(content: RecordDict) -> tuple[KeyedReport, list[float]]:
    """The report and cross-key row of :func:`keyed_record`."""
    numbers = dict(content.metric_records["metrics"])
    row = [float(a) for a in numbers.pop(CROSS_KEY)]
    fields = {
        **numbers,
        "fingerprint": str(content.config_records["key"]["fingerprint"]),
        "partition": int(numbers["partition"]),
        "n_images": int(numbers["n_images"]),
        "labels_identical": bool(numbers["labels_identical"]),
    }
    return KeyedReport.from_dict(fields), row
