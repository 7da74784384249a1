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

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("ciphertext_only", "known_plaintext", "learned_inversion", "scoring", "weight_matching"))
