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
* Loading recomputes the fingerprint and rejects a tampered or truncated file.
* Keys are never printed or logged: ``repr(key)`` shows the scheme, parameters and fingerprint only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from veilnet.errors import KeyFileError, OutputExistsError

FORMAT = "veilnet-key"
FORMAT_VERSION = 1
MIN_ENTROPY_BITS = 128


class KeyRNG:
    """Source of key material.

    ``KeyRNG()`` draws from the OS CSPRNG; ``KeyRNG(seed)`` from ``random.Random(seed)`` for
    reproducible experiments (``reproducible`` is then True). Both expose the same methods.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.reproducible = seed is not None
        self._random: random.Random = random.Random(seed) if seed is not None else secrets.SystemRandom()

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
        """Write the key file with mode 0600; refuse to overwrite unless ``force``.

        The file is written to a temporary name first and then linked (no overwrite) or
        renamed (overwrite) into place, so an interrupted write never leaves a half key.
        """
        path = Path(path)
        if path.exists() and not force:
            raise OutputExistsError(f"key file {path} already exists; pass --force to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            if force:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise OutputExistsError(f"key file {path} already exists; pass --force to overwrite it") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        os.chmod(path, 0o600)
        return path


def load(path: str | os.PathLike[str], *, scheme: str | None = None) -> Key:
    """Read a key file, check its format, version and fingerprint (and scheme, if given)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.__class__.__name__}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise KeyFileError(f"key file {path} is not valid JSON (truncated or corrupt)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyFileError(f"{path} is not a veilnet key file (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise KeyFileError(f"key file {path} has version {doc.get('version')!r}; this veilnet reads version {FORMAT_VERSION}")
    missing = [k for k in ("scheme", "params", "material", "fingerprint") if k not in doc]
    if missing:
        raise KeyFileError(f"key file {path} lacks the field(s) {', '.join(missing)} (truncated or corrupt)")
    if not isinstance(doc["params"], dict) or not isinstance(doc["material"], dict):
        raise KeyFileError(f"key file {path} has malformed params or material")
    key = Key(
        scheme=str(doc["scheme"]),
        params=doc["params"],
        material=doc["material"],
        entropy_bits=float(doc.get("entropy_bits", 0.0)),
        reproducible=bool(doc.get("reproducible", False)),
    )
    if not secrets.compare_digest(key.fingerprint, str(doc["fingerprint"])):
        raise KeyFileError(f"key file {path}: the material does not match its fingerprint (tampered or corrupt)")
    if scheme is not None and key.scheme != scheme:
        raise KeyFileError(f"key file {path} is a {key.scheme!r} key; expected a {scheme!r} key")
    return key
