"""A federation in one process, without Ray: veilnet's server app and client app joined by a Grid
that hands every message to the client app at once (tests only).

Flower's simulation engine starts Ray and an actor per client (30–60 s on the shared machine);
this grid runs the same apps (:class:`veilnet.federated.server_app.Federation` and
:data:`veilnet.federated.client_app.app`, SecAgg+'s mod included) in a second or two. Each
message is deep-copied on the way, as the wire would (SecAgg+'s mod edits the record it gets), and
an exception of the client app comes back as an error reply, as a SuperNode sends it.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from veilnet.federated.task import FederatedConfig

#: Node ids of the clients (partition i is node FIRST_NODE + i).
FIRST_NODE = 101


class LoopbackGrid:
    """A Grid whose ``clients`` nodes each hold one partition of the server's data."""

    def __init__(self, clients: int) -> None:
        from veilnet.federated.client_app import app

        self.app, self.run = app, SimpleNamespace(run_id=1)  # ``run``: what Flower's legacy workflow reads
        self.contexts = {
            FIRST_NODE + i: Context(run_id=1, node_id=FIRST_NODE + i, node_config={"partition-id": i}, state=RecordDict(), run_config={})
            for i in range(clients)
        }
        self._replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # what the SuperLink does (Flower's InMemoryGrid too)
            sent = copy.deepcopy(message)
            try:
                reply = self.app(sent, self.contexts[message.metadata.dst_node_id])
            except Exception as exc:  # noqa: BLE001 - a SuperNode answers with the error
                reply = Message(Error(code=0, reason=f"<class '{type(exc).__name__}'>:<'{exc}'>"), reply_to=sent)
            self._replies[message.metadata.message_id] = copy.deepcopy(reply)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """The replies in the order of their nodes (Flower's strategies sample the nodes in a
        random order, and FedAvg sums float32 arrays in the replies' order: sorted, two runs
        of one federation give the same bits)."""
        return sorted(self.pull_messages(self.push_messages(messages)), key=lambda reply: reply.metadata.src_node_id)


@contextmanager
def server_identity() -> Iterator[None]:
    """The task identity Flower's Message needs in a server app's process, restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("_run_id", "_task_id", "_node_id"):
            patch.setattr(TaskIdentity, name, 1)
        yield


def context() -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})


def federate(config: FederatedConfig) -> tuple[Any, list[dict[str, torch.Tensor]]]:
    """Run ``config``'s federation on a :class:`LoopbackGrid`: the Federation, and the global
    model after every round (index 0: the initial one)."""
    from veilnet.federated.server_app import Federation

    states: list[dict[str, torch.Tensor]] = []
    federation = Federation(config, progress=False)
    central = federation._central

    def recording(server_round: int, state: dict[str, torch.Tensor]) -> dict[str, float]:
        states.append({name: value.clone() for name, value in state.items()})
        return central(server_round, state)

    federation._central = recording  # type: ignore[method-assign]
    with server_identity():
        federation.main(LoopbackGrid(config.clients), context())
    return federation, states


def run_simulation(*, server_app: Any, num_supernodes: int, **_: Any) -> None:
    """Stands in for :func:`flwr.simulation.run_simulation`: the server app on a LoopbackGrid."""
    with server_identity():
        server_app(LoopbackGrid(num_supernodes), context())
