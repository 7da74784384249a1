"""The untrusted-server service and its client (keyed models: the ConvMixer paper's encryption
with a secret key, Sec. 3, and "Combined Use of Federated Learning and Image Encryption for
Privacy-Preserving Image Classification with Vision Transformer", Sec. 3; the complex-valued
networks of "Interpretable Complex-Valued Neural Networks for Privacy Protection", ICLR 2020,
fit as one more kind).

Threat model: the server is honest-but-curious. It runs a private model (for keyed models, one
transformed with a secret key, :func:`veilnet.keyed.transform.transform_model`) and sees only
what clients send: inputs the client encoded with its secret. It never holds the secret or a
plain image; what it publishes about the model (``/v1/info``) are the kind's public parameters
(for keyed models those of :func:`veilnet.keyed.public_params`) and the card's architecture name.
The client holds the secret, encodes locally, checks its secret against the served model before
sending, and decodes the answers with per-batch state that never leaves it. How much the
encoded inputs and the model reveal is measured by the attacks (:mod:`veilnet.keyed.attacks`).

* :mod:`.app`: the FastAPI application (:func:`create_app`, :func:`run`; ``veilnet serve``;
  :func:`local_server` runs one in a thread of this process).
* :mod:`.client`: :class:`Client` (``veilnet query``).
* :mod:`.kinds`: what a served model expects and how the client feeds it; one
  :class:`~.kinds.Kind` per family of model, generic in its secret and per-batch state.
* :mod:`.codec`: ``.npy`` / safetensors bodies, parsed safely.
* :mod:`.batching`: dynamic batching of concurrent requests.
* :mod:`.tokens`: bearer tokens from files or the environment.

Server and client need the ``serve`` extra (FastAPI, uvicorn, httpx).
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("app", "batching", "client", "kinds", "tokens"))
