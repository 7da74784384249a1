"""The untrusted-server service and its client (keyed models: ConvMixer paper, Sec. 3; ViT
paper, Sec. 3).

Threat model: the server is honest-but-curious. It runs a model transformed with a secret key
(:func:`veilnet.keyed.transform.transform_model`) and sees only what clients send: images
encrypted with that key. It never holds the key or a plain image; what it publishes about the
key (``/v1/info``) are the public parameters of :func:`veilnet.keyed.public_params`. The client
holds the key, encrypts locally and checks its key against the served model before sending.
How much the encrypted images and the model reveal is measured by :mod:`veilnet.attacks`.

* :mod:`.app`: the FastAPI application (:func:`create_app`, :func:`run`; ``veilnet serve``).
* :mod:`.client`: :class:`Client` (``veilnet query``).
* :mod:`.kinds`: what a served model expects; one :class:`~.kinds.Kind` per family of model.
* :mod:`.codec`: ``.npy`` / safetensors bodies, parsed safely.
* :mod:`.batching`: dynamic batching of concurrent requests.
* :mod:`.tokens`: bearer tokens from files or the environment.

Server and client need the ``serve`` extra (FastAPI, uvicorn, httpx).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy imports below give, for type checkers
    from veilnet.serve.app import Limits, ServedModel, create_app, run
    from veilnet.serve.batching import BatchingConfig
    from veilnet.serve.client import AuthRefusedError, Client, Predictions, ServerUnreachableError, ServiceError, read_images
    from veilnet.serve.kinds import KINDS, Expectation, Kind
    from veilnet.serve.tokens import client_token, server_tokens

#: Public names and their modules, imported on first use so that ``import veilnet.serve`` (and the
#: ``veilnet`` command) work without FastAPI installed; only the server needs it.
_EXPORTS = {
    **dict.fromkeys(("Limits", "ServedModel", "create_app", "run"), "veilnet.serve.app"),
    **dict.fromkeys(("client_token", "server_tokens"), "veilnet.serve.tokens"),
    "BatchingConfig": "veilnet.serve.batching",
    **dict.fromkeys(("AuthRefusedError", "Client", "Predictions", "ServerUnreachableError", "ServiceError", "read_images"), "veilnet.serve.client"),
    **dict.fromkeys(("KINDS", "Expectation", "Kind"), "veilnet.serve.kinds"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'veilnet.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
