"""Secret keys: generation, JSON key files, fingerprints.

The schemes themselves (block-wise, ViT) live in :mod:`veilnet.keyed`; this module is the
machinery they share.

* Key material comes from the operating system's CSPRNG (:class:`secrets.SystemRandom`, which
  reads ``os.urandom`` on every call), so a permutation of n elements carries its full
  log2(n!) bits. A seed may be given for reproducible experiments; the key file then says
  ``"reproducible": true`` and its entropy is capped by the seed's bits.
* A key file is JSON: format name and version, scheme, parameters, the material stored
  explicitly (permutations, masks, matrices), the entropy drawn, and the SHA-256 fingerprint of
  the canonical JSON of (scheme, parameters, material). It is written with mode 0600 and never
  overwrites an existing file unless ``force=True``.
* Loading treats the file as hostile input: it refuses anything that is not the documented
  layout (non-finite numbers, nesting deeper than a key has, wrongly typed fields), recomputes the
  fingerprint to reject a tampered or truncated file, and hands the material to its scheme's
  validator (:data:`SCHEME_VALIDATORS`), which checks types, ranges, lengths and the permutation
  property, so a key that loads is a key that works. Every refusal is one
  :class:`~veilnet.errors.KeyFileError`.
* Keys are never printed or logged: ``repr(key)`` shows the scheme, parameters and fingerprint only.

The ``veilnet key`` command group lives with the method that uses the keys (:mod:`veilnet.keyed.keys_cli`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veilnet.checks import is_number
from veilnet.errors import KeyFileError
from veilnet.paths import prepare_output, write_text

if TYPE_CHECKING:
    import torch

FORMAT = "veilnet-key"
FORMAT_VERSION = 1
MIN_ENTROPY_BITS = 128
#: Deepest JSON nesting a key file may have (file → material → matrix → row → number is 4).
MAX_DEPTH = 8
#: Where each scheme's material validator lives (``module:function``, imported on first use).
#: The validator takes a :class:`Key` and raises KeyFileError unless its params and material are
#: exactly what the scheme writes. A key of a scheme not listed here is refused.
SCHEME_VALIDATORS: dict[str, str] = {
    "block": "veilnet.keyed.schemes:validate",
    "vit": "veilnet.keyed.schemes:validate",
}


class KeyRNG:
    """Source of key material.

    ``KeyRNG()`` draws from the OS CSPRNG; ``KeyRNG(seed)`` from ``random.Random(seed)`` for
    reproducible experiments (``reproducible`` is then True). Both expose the same methods.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.reproducible = seed is not None
        self._random: random.Random = random.Random(seed) if seed is not None else secrets.SystemRandom()

    @classmethod
    def stream(cls, label: str, seed: int | None, index: int) -> KeyRNG:
        """The ``index``-th generator of a reproducible stream named ``label``, seeded by ``seed``.

        Its state comes from the bytes ``veilnet/<label>/<seed>/<index>`` (hashed by
        :class:`random.Random`), never from an integer seed, so keys drawn from a stream are
        domain-separated from every key made with ``KeyRNG(seed)`` (e.g. ``key new --seed``):
        the random wrong keys of an evaluation seeded 0 are not the key seeded 0. ``seed`` None
        gives the OS CSPRNG.
        """
        if seed is None:
            return cls()
        rng = cls(seed)
        rng._random = random.Random(f"veilnet/{label}/{int(seed)}/{int(index)}".encode())
        return rng

    def permutation(self, n: int) -> list[int]:
        """A uniformly random permutation of range(n) (Fisher–Yates)."""
        perm = list(range(n))
        self._random.shuffle(perm)
        return perm

    def subset(self, n: int, k: int) -> list[int]:
        """k distinct indices of range(n), uniformly at random, sorted."""
        return sorted(self._random.sample(range(n), k))

    def normal(self, *shape: int) -> torch.Tensor:
        """Independent standard normal draws (float64), for random matrices."""
        import torch

        count = math.prod(shape)
        values = [self._random.gauss(0.0, 1.0) for _ in range(count)]
        return torch.tensor(values, dtype=torch.float64).reshape(shape)

    def entropy_bits(self, key_space_bits: float) -> float:
        """Entropy actually drawn for a key whose space has ``key_space_bits`` bits."""
        if self.seed is None:
            return key_space_bits
        return min(key_space_bits, float(max(int(self.seed).bit_length(), 1)))


def log2_factorial(n: int) -> float:
    """log2(n!) computed exactly through log-gamma: lgamma(n + 1) / ln 2."""
    return math.lgamma(n + 1) / math.log(2)


def log2_binomial(n: int, k: int) -> float:
    """log2(C(n, k)) = log2(n!) - log2(k!) - log2((n-k)!)."""
    return log2_factorial(n) - log2_factorial(k) - log2_factorial(n - k)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def register_scheme(name: str, validator: str | Callable[[Key], None]) -> None:
    """Make :func:`load` accept keys of scheme ``name``, checked by ``validator`` (a callable or
    ``"module:function"``), which raises KeyFileError unless the key's params and material are valid."""
    _VALIDATORS[name] = validator


_VALIDATORS: dict[str, str | Callable[[Key], None]] = dict(SCHEME_VALIDATORS)


def validate(key: Key) -> Key:
    """Check ``key``'s params and material with its scheme's validator; return the key.

    Raises KeyFileError for a scheme veilnet does not know or material the scheme refuses.
    """
    validator = _VALIDATORS.get(key.scheme)
    if validator is None:
        raise KeyFileError(f"key has scheme {key.scheme!r}; veilnet reads {', '.join(map(repr, sorted(_VALIDATORS)))}")
    if isinstance(validator, str):
        module, _, name = validator.partition(":")
        validator = getattr(importlib.import_module(module), name)
    validator(key)
    return key


def _reject_constant(name: str) -> Any:
    raise KeyFileError(f"holds the non-finite number {name} (JSON has none; a key's numbers are finite)")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping past ``limit`` (no recursion)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > limit:
            return depth
        nxt: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, list):
                nxt.extend(v)
        level = nxt
    return depth - 1


@dataclass(frozen=True)
class Key:
    """A secret key: scheme name, public parameters and secret material.

    ``material`` holds JSON-serialisable values only (lists of ints/floats) and is left out of
    ``repr`` so that a key printed by accident shows nothing secret.
    """

    scheme: str
    params: dict[str, Any]
    material: dict[str, Any] = field(repr=False)
    entropy_bits: float = 0.0
    reproducible: bool = False

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical JSON of scheme, parameters and material."""
        digest = hashlib.sha256(_canonical({"scheme": self.scheme, "params": self.params, "material": self.material}))
        return "sha256:" + digest.hexdigest()

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "scheme": self.scheme,
            "params": self.params,
            "reproducible": self.reproducible,
            "entropy_bits": self.entropy_bits,
            "fingerprint": self.fingerprint,
            "material": self.material,
        }
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the key file with mode 0600; refuse to overwrite unless ``force`` (and any path
        :func:`veilnet.paths.prepare_output` refuses: under a file, in an unwritable folder).

        The file is written with :func:`veilnet.paths.write_text` (never a half key; without
        ``force`` not even over a file created meanwhile).
        """
        return write_text(prepare_output(path, force=force), self.to_json(), perm=0o600, replace=force)


def load(path: str | os.PathLike[str], *, scheme: str | None = None) -> Key:
    """Read a key file, check its layout, version and fingerprint, then its params and material
    (:func:`validate`), and its scheme if ``scheme`` is given. Any failure is one KeyFileError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.__class__.__name__}") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except KeyFileError as exc:
        raise KeyFileError(f"key file {path} {exc}") from None
    except RecursionError:
        raise KeyFileError(f"key file {path} is nested too deeply to be a key file") from None
    except ValueError:  # JSONDecodeError, and integers too long to convert
        raise KeyFileError(f"key file {path} is not valid JSON (truncated or corrupt)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyFileError(f"{path} is not a veilnet key file (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise KeyFileError(f"key file {path} has version {doc.get('version')!r}; this veilnet reads version {FORMAT_VERSION}")
    missing = [k for k in ("scheme", "params", "material", "fingerprint") if k not in doc]
    if missing:
        raise KeyFileError(f"key file {path} lacks the field(s) {', '.join(missing)} (truncated or corrupt)")
    if _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise KeyFileError(f"key file {path} is nested deeper than a key file is ({MAX_DEPTH} levels)")
    if not isinstance(doc["params"], dict) or not isinstance(doc["material"], dict):
        raise KeyFileError(f"key file {path} has malformed params or material (expected JSON objects)")
    if not isinstance(doc["scheme"], str) or not isinstance(doc["fingerprint"], str):
        raise KeyFileError(f"key file {path}: scheme and fingerprint must be strings")
    entropy, reproducible = doc.get("entropy_bits", 0.0), doc.get("reproducible", False)
    if not is_number(entropy) or not 0 <= entropy < math.inf:
        raise KeyFileError(f"key file {path}: entropy_bits must be a number ≥ 0, got {type(entropy).__name__}")
    if not isinstance(reproducible, bool):
        raise KeyFileError(f"key file {path}: reproducible must be true or false, got {type(reproducible).__name__}")
    key = Key(scheme=doc["scheme"], params=doc["params"], material=doc["material"], entropy_bits=float(entropy), reproducible=reproducible)
    if not doc["fingerprint"].isascii() or not secrets.compare_digest(key.fingerprint, doc["fingerprint"]):  # compare_digest takes ASCII str only
        raise KeyFileError(f"key file {path}: the material does not match its fingerprint (tampered or corrupt)")
    if scheme is not None and key.scheme != scheme:
        raise KeyFileError(f"key file {path} is a {key.scheme!r} key; expected a {scheme!r} key")
    try:
        validate(key)
    except KeyFileError as exc:
        raise KeyFileError(f"key file {path}: {exc}") from None
    return key
