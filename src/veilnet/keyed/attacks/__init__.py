"""Key-recovery attacks on keyed models: how much of the secret key, and so of the images, a
server or an onlooker gets back (beyond the papers, which measure only random wrong keys; that
measurement, the ConvMixer paper's Fig. 5, is part of :mod:`veilnet.keyed.evaluation`).

One file per attack; each returns a frozen :class:`veilnet.report.Result` dataclass that names
the attacked key by its public parameters (:class:`veilnet.keyed.schemes.KeyParams`) and scores
what it recovered with :class:`.scoring.KeyScore`:

* :mod:`.known_plaintext` — the key from a few (plain, encrypted) image pairs.
* :mod:`.weight_matching` — the key from the transformed model and the plain model it came from.
* :mod:`.ciphertext_only` — a permutation-type key from encrypted images and unrelated plain images.
* :mod:`.learned_inversion` — no key at all: a U-Net (:mod:`veilnet.attacks.inversion`) trained on
  (encrypted, plain) pairs under keys the attacker draws itself, applied to images encrypted under
  an unseen key, beside the ciphertext itself and the mean image as guesses.
"""

from __future__ import annotations

from veilnet._lazy import exports

#: Public name -> the submodule defining it, imported on first use (PEP 562).
_WHERE = {
    **dict.fromkeys(["ATTACKER_STREAM", "AttackerKeys", "FRESH_KEY", "ciphertext_metrics", "keyed_inversion", "keyed_inversion_table"], "learned_inversion"),
    **dict.fromkeys(["CiphertextOnlyResult", "ciphertext_only_attack"], "ciphertext_only"),
    **dict.fromkeys(["KnownPlaintextResult", "known_plaintext_attack"], "known_plaintext"),
    "KeyScore": "scoring",
    **dict.fromkeys(["WeightMatchingResult", "weight_matching_attack"], "weight_matching"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
