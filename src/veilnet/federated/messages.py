"""The messages between veilnet's ServerApp and ClientApp (Flower's Message API).

Federated ViT paper (Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption
for Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3.1 and 4.1: clients
train on their own images, the server integrates the models with FedAvg every round and
evaluates the integrated model centrally; after the last round every client keys its own copy.

Every message from the server carries the run's :class:`~veilnet.federated.task.FederatedConfig`
as JSON in ``config[CONFIG]``; a client's partition is its node config's ``partition-id``, or
its node config names its own data set (``data``) and the server gives it an index among the
clients (``config[CLIENTS]``: node id → index, JSON, in every round's message):

* ``query.hello`` (:data:`HELLO`), while the server waits for its clients: the config in; the
  client checks that its images fit the model and answers with its partition (−1 for its own
  data) and its numbers of training and test images (:func:`hello_record`). A client that does
  not fit answers with an error and is not admitted.
* ``train``: the global weights in (with the round, and FedProx's μ in :data:`PROXIMAL_MU`),
  the client's weights and ``num-examples`` out (with SecAgg+, the update in Flower's legacy
  layout instead: :mod:`veilnet.federated.client_app`).
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

__all__ = [
    "CLIENTS",
    "CONFIG",
    "CROSS_KEY",
    "HELLO",
    "KEYED",
    "MAX_WEIGHT",
    "PROXIMAL_MU",
    "ROUND",
    "WEIGHT",
    "hello_record",
    "keyed_record",
    "read_keyed_record",
]

#: Name of the ConfigRecord entry that holds the run's FederatedConfig as JSON.
CONFIG = "veilnet"
#: Config entry with the admitted clients' indices, ``{"node id": index}`` as JSON.
CLIENTS = "veilnet-clients"
#: Config entry of a SecAgg+ round with W = max_k n_k of the admitted clients.
MAX_WEIGHT = "veilnet-max-weight"
#: Message type of the question the server asks every client that connects.
HELLO = "query.hello"
#: Message type of the final keyed step.
KEYED = "query.keyed"
#: Config entry with the round number (the Message-API FedAvg's name for it).
ROUND = "server-round"
#: Config entry of a FedProx round with the proximal term's μ (Flower's FedProx sets it).
PROXIMAL_MU = "proximal-mu"
#: Metric entry with a client's n_k, FedAvg's weight.
WEIGHT = "num-examples"
#: Metric entry of a keyed answer with the client's row of the cross-key matrix.
CROSS_KEY = "cross_key"


def hello_record(partition: int, n_train: int, n_test: int) -> RecordDict:
    """A client's answer to :data:`HELLO`: its partition (−1: its own data) and its numbers of
    training images (n_k, FedAvg's weight) and test images."""
    return RecordDict({"metrics": MetricRecord({"partition": int(partition), WEIGHT: int(n_train), "test-examples": int(n_test)})})


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
