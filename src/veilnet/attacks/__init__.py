"""Attacks that test what keyed models protect (DESIGN.md: attacks/).

One file per attack; each returns a frozen :class:`veilnet.report.Result` dataclass:

* :mod:`.random_keys` — wrong random keys against a transformed model (ConvMixer paper, Fig. 5).
* :mod:`.known_plaintext` — the key from a few (plain, encrypted) image pairs.
* :mod:`.weight_matching` — the key from the transformed model and the plain model it came from.
* :mod:`.ciphertext_only` — the block key from encrypted images and unrelated plain images.
"""

from veilnet.attacks.ciphertext_only import CiphertextOnlyResult, ciphertext_only_attack
from veilnet.attacks.known_plaintext import KnownPlaintextResult, known_plaintext_attack
from veilnet.attacks.random_keys import RandomKeysResult, random_keys_attack
from veilnet.attacks.scoring import KeyScore
from veilnet.attacks.weight_matching import WeightMatchingResult, weight_matching_attack

__all__ = [
    "CiphertextOnlyResult",
    "KeyScore",
    "KnownPlaintextResult",
    "RandomKeysResult",
    "WeightMatchingResult",
    "ciphertext_only_attack",
    "known_plaintext_attack",
    "random_keys_attack",
    "weight_matching_attack",
]
