"""Federated training with Flower, then a key per client.

Paper: Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption for
Privacy-Preserving Image Classification with Vision Transformer" (the federated ViT paper),
Sec. 3-4. K clients train one model with FedAvg without pooling their images,

    w_{t+1} = Σ_k (n_k / n) · w_{t+1}^k                      (FedAvg, McMahan et al., 2017)

and after the last round each client transforms its copy of the integrated model with its own
secret key (Ê = Ea·E, Eq. 3; Ê_pos = Eb·E_pos, Eq. 8) and encrypts its own test images
(Eq. 9-13); the keyed model on encrypted images computes the integrated model's logits on plain
images (Eq. 14), so each client's accuracy equals the plain model's (Table 1).

Threat model: the clients do not share images; the server sees every client's model update
(or, with SecAgg+, only their sum) and, from the keyed step, numbers only (accuracies, the
cross-key row, the key's fingerprint) — never a key, a transformed model or a test image, plain
or encrypted. It holds the plain integrated model, so a transformed model would give it the key
(:mod:`veilnet.keyed.attacks.weight_matching`): whoever later serves a client's transformed
model must not be the federation's server.

Layout (after Flower's app template: the apps are thin, the ML is in one task module):

* :mod:`.task` — config, partitions, local training, evaluation, the keyed step, the baseline;
* :mod:`.client_app` — the Flower ClientApp (``app``);
* :mod:`.server_app` — the server's side of a run (:class:`Federation`) and the deployment's
  ServerApp (``app``, a straight-line main);
* :mod:`.messages` — what the two apps send each other (record names, the keyed answer);
* :mod:`.simulation` — ``veilnet fl run`` on Flower's simulation engine;
* :mod:`.deployment` — ``veilnet fl server`` / ``veilnet fl client`` as separate processes;
* :mod:`.guard` — runs each of the deployment's Flower processes and takes its process tree down
  with the command;
* :mod:`.results` — :class:`FederatedResult`, its Markdown report and plot;
* :mod:`.errors` — :class:`~.errors.FederationError`, a run that did not complete.

Flower is imported only by the apps, :mod:`.messages` and what runs them.
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("results", "simulation", "task"))
