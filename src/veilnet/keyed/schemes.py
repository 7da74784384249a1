"""Key schemes: the block-wise key (ConvMixer paper) and the ViT key (federated ViT paper).

A key is a :class:`veilnet.keys.Key` whose ``params`` are public (``block_size`` M, ``channels``
C, ``image_size`` S and, for the ViT scheme, the kind of Ea) and whose ``material`` is secret.
Both schemes reduce to one piece of linear algebra, :class:`Cipher`, acting on a flattened block
``b`` (a row vector of L = M·M·C pixels in (C, M, M) order, Eq. 11 of the ViT paper):

    b̂ = (b − ½)·Ea⁻¹ + ½          (pixels, Eq. 12; centred on mid-grey, see below)
    B̂_i = B_{l_e(i)}               (blocks, Eq. 9-10; the block scheme keeps blocks in place)

* Block scheme (ConvMixer paper, Sec. 3.2): Ea is the signed permutation with
  Ea[k, v_k] = −1 if r_k = 1 else +1, where v is the pixel shuffle of key K1 (Eq. 4) and r the
  flip vector of key K2 with exactly half ones (Eq. 5-6). Centring on ½ makes the sign flip the
  negative-positive flip 1 − x of Eq. 6 exactly, so no x → 2x − 1 normalisation (Eq. 7) is needed.
* ViT scheme (ViT paper, Sec. 3.2-3.3): Eb permutes the N blocks (Eq. 4-6), Ea is a
  permutation (the choice of the paper's Fig. 2), a signed permutation (shuffle + negative-positive)
  or a Haar-random orthogonal matrix; any invertible Ea can be given through :func:`vit_key`.
  Centring on ½ is our reading: for a permutation it changes nothing, for a signed permutation it
  keeps images in [0, 1], and for every Ea the model's bias absorbs the shift exactly.

Key space (ConvMixer paper, Sec. 4.3): O_p = L! pixel shuffles times O_b = C(L, L/2) flip vectors;
the ViT scheme adds N! block permutations. Computed with log-gamma by :func:`key_space_bits`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from veilnet import keys
from veilnet.errors import ConfigError, KeyFileError, KeyMismatchError

SCHEMES = ("block", "vit")
EA_KINDS = ("permutation", "signed-permutation", "orthogonal")
#: Ea supplied as an explicit matrix through :func:`vit_key` (recorded as this kind).
EA_MATRIX = "matrix"
#: Largest condition number accepted for Ea (larger ones lose the exact identity in float32).
MAX_CONDITION = 1e6
#: Bits the CSPRNG draws per standard normal (one 53-bit uniform each, Box-Muller in pairs).
BITS_PER_NORMAL = 53


@dataclass(frozen=True)
class Cipher:
    """The linear algebra of a key, ready to apply to images and models.

    ``ea`` is Ea (float64, L×L; the model side multiplies the patch embedding by it, Eq. 3/8).
    ``shuffle``/``flip`` are the same Ea in structured form when it is a signed permutation
    (Ea[k, shuffle[k]] = ∓1), else None. ``block_perm`` is l_e of Eq. 4 (0-based), or None when
    blocks stay in place (block scheme).
    """

    block_size: int
    channels: int
    image_size: int
    ea: torch.Tensor
    shuffle: torch.Tensor | None
    flip: torch.Tensor | None
    block_perm: torch.Tensor | None

    @property
    def block_len(self) -> int:
        """L = M·M·C, the pixels in one block."""
        return self.block_size * self.block_size * self.channels

    @property
    def num_blocks(self) -> int:
        """N = (S/M)², the blocks in one image."""
        return (self.image_size // self.block_size) ** 2

    @classmethod
    def signed_permutation(cls, block_size: int, channels: int, image_size: int, shuffle: torch.Tensor, flip: torch.Tensor, block_perm: torch.Tensor | None = None) -> Cipher:
        """The cipher whose Ea has Ea[k, shuffle[k]] = −1 where ``flip[k]``, +1 elsewhere (Eq. 4-6, 8-9)."""
        length = shuffle.numel()
        ea = torch.zeros(length, length, dtype=torch.float64)
        ea[torch.arange(length), shuffle] = 1.0 - 2.0 * flip.double()
        return cls(block_size=block_size, channels=channels, image_size=image_size, ea=ea, shuffle=shuffle.long(), flip=flip.bool(), block_perm=block_perm)

    @property
    def keeps_images(self) -> bool:
        """True when encrypted images are still images in [0, 1] (Ea is a signed permutation)."""
        return self.shuffle is not None


def generate_key(
    scheme: str,
    block_size: int,
    channels: int,
    image_size: int,
    ea: str = "permutation",
    seed: int | None = None,
) -> keys.Key:
    """A fresh key of ``scheme`` ('block' or 'vit') from the OS CSPRNG (or a seed, reproducibly).

    ``ea`` (ViT scheme only) is 'permutation', 'signed-permutation' or 'orthogonal' (Haar, by QR
    of a Gaussian matrix with the signs of R's diagonal moved into Q).
    """
    params = _params(scheme, block_size, channels, image_size, ea)
    if ea == EA_MATRIX:
        raise ConfigError("an explicit Ea is given with veilnet.keyed.vit_key, not generated")
    rng = keys.KeyRNG(seed)
    length = block_size * block_size * channels
    kind = params.get("ea", "signed-permutation")
    material: dict[str, Any] = {}
    drawn = 0.0
    if kind in ("permutation", "signed-permutation"):
        material["shuffle"] = rng.permutation(length)
        drawn += keys.log2_factorial(length)
        if kind == "signed-permutation":
            material["flip"] = rng.subset(length, length // 2)
            drawn += keys.log2_binomial(length, length // 2)
    else:
        gaussian = rng.normal(length, length)
        q, r = torch.linalg.qr(gaussian)
        material["ea_matrix"] = (q * torch.sign(torch.diagonal(r))).tolist()
        drawn += BITS_PER_NORMAL * length * length
    if scheme == "vit":
        blocks = (image_size // block_size) ** 2
        material["block_perm"] = rng.permutation(blocks)
        drawn += keys.log2_factorial(blocks)
    return keys.Key(scheme=scheme, params=params, material=material, entropy_bits=rng.entropy_bits(drawn), reproducible=rng.reproducible)


def vit_key(
    ea_matrix: torch.Tensor,
    *,
    block_size: int,
    channels: int,
    image_size: int,
    block_perm: list[int] | None = None,
    seed: int | None = None,
) -> keys.Key:
    """A ViT-scheme key with an explicit invertible Ea (Eq. 2); Eb is drawn unless given.

    Raises ConfigError when Ea is not L×L or its condition number exceeds 1e6. Only the drawn
    Eb counts towards ``entropy_bits``: the entropy of a supplied Ea is unknown.
    """
    params = _params("vit", block_size, channels, image_size, EA_MATRIX)
    length = block_size * block_size * channels
    ea = torch.as_tensor(ea_matrix, dtype=torch.float64)
    if ea.shape != (length, length):
        raise ConfigError(f"Ea must be {length}×{length} for block size {block_size} and {channels} channels; got shape {tuple(ea.shape)}")
    _check_condition(ea)
    blocks = (image_size // block_size) ** 2
    rng = keys.KeyRNG(seed)
    perm = list(block_perm) if block_perm is not None else rng.permutation(blocks)
    drawn = keys.log2_factorial(blocks) if block_perm is None else 0.0
    key = keys.Key(scheme="vit", params=params, material={"ea_matrix": ea.tolist(), "block_perm": perm}, entropy_bits=rng.entropy_bits(drawn), reproducible=rng.reproducible)
    cipher(key)  # validates block_perm
    return key


def key_space_bits(key: keys.Key | Mapping[str, Any]) -> float:
    """log2 of the number of keys with these parameters (ConvMixer paper, Sec. 4.3), exactly.

    Takes a Key or a mapping with ``scheme`` and the parameters (e.g. a model card's
    ``extra["keyed"]``). Block scheme: log2(L!) + log2(C(L, ⌊L/2⌋)) with L = M²C (247.8 bits for
    M = 4, C = 3). ViT scheme: log2(N!) plus log2(L!) for a permutation Ea, plus the flips for a
    signed permutation; infinite for a continuous (orthogonal or supplied) Ea.
    """
    scheme, params = (key.scheme, key.params) if isinstance(key, keys.Key) else (key["scheme"], key)
    length = int(params["block_size"]) ** 2 * int(params["channels"])
    shuffle = keys.log2_factorial(length)
    flips = keys.log2_binomial(length, length // 2)
    if scheme == "block":
        return shuffle + flips
    kind = params["ea"]
    ea_bits = {"permutation": shuffle, "signed-permutation": shuffle + flips}.get(kind, math.inf)
    return keys.log2_factorial((int(params["image_size"]) // int(params["block_size"])) ** 2) + ea_bits


def public_params(key: keys.Key) -> dict[str, Any]:
    """What a server may know about the key (stored in a transformed model's card): the scheme,
    block size, channels, image size, kind of Ea and the fingerprint; never the material."""
    return {"scheme": key.scheme, **key.params, "ea": key.params.get("ea", "signed-permutation"), "fingerprint": key.fingerprint}


def cipher(key: keys.Key) -> Cipher:
    """Decode and validate a key's material into a :class:`Cipher` (KeyFileError if malformed)."""
    if key.scheme not in SCHEMES:
        raise KeyFileError(f"key has scheme {key.scheme!r}; veilnet.keyed takes {' or '.join(map(repr, SCHEMES))}")
    try:
        p = key.params
        params = _params(key.scheme, int(p["block_size"]), int(p["channels"]), int(p["image_size"]), p.get("ea", "permutation"))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise KeyFileError(f"key {key.fingerprint[:19]} has malformed parameters: {exc}") from None
    m, c, s = params["block_size"], params["channels"], params["image_size"]
    length = m * m * c
    mat = key.material
    block_perm = _permutation(mat.get("block_perm"), (s // m) ** 2, "block_perm", key) if key.scheme == "vit" else None
    if key.scheme == "vit" and params["ea"] in ("orthogonal", EA_MATRIX):
        try:
            ea = torch.tensor(mat["ea_matrix"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise KeyFileError(f"key {key.fingerprint[:19]}: Ea (ea_matrix) is missing or not a matrix of numbers") from None
        if ea.shape != (length, length):
            raise KeyFileError(f"key {key.fingerprint[:19]}: Ea is {tuple(ea.shape)}, expected {length}×{length}")
        _check_condition(ea)
        return Cipher(block_size=m, channels=c, image_size=s, ea=ea, shuffle=None, flip=None, block_perm=block_perm)
    shuffle = _permutation(mat.get("shuffle"), length, "shuffle", key)
    flip = torch.zeros(length, dtype=torch.bool)
    if key.scheme == "block" or params["ea"] == "signed-permutation":
        flip[_subset(mat.get("flip"), length, key)] = True
    return Cipher.signed_permutation(m, c, s, shuffle, flip, block_perm)


def check_fits(key: keys.Key, *, image_shape: tuple[int, ...] | torch.Size | None = None, model: torch.nn.Module | None = None) -> None:
    """Raise KeyMismatchError when the key does not fit the images or the model, naming both."""
    p = key.params
    m, c, s = int(p["block_size"]), int(p["channels"]), int(p["image_size"])
    if image_shape is not None:
        shape = tuple(image_shape)
        if len(shape) != 4 or shape[1] != c or shape[2] != s or shape[3] != s:
            raise KeyMismatchError(f"key ({key.scheme}, block size {m}) expects images N×{c}×{s}×{s}; got images of shape {shape}")
    if model is not None:
        embed = getattr(model, "patch_embed", None)
        name = type(model).__name__
        if not isinstance(embed, torch.nn.Conv2d):
            raise KeyMismatchError(f"model {name} has no patch embedding; keyed transforms take ConvMixer or ViT models")
        patch = int(getattr(model, "patch_size", embed.kernel_size[0]))
        if patch != m:
            raise KeyMismatchError(f"key has block size {m} but model {name} has patch size {patch}")
        if embed.in_channels != c:
            raise KeyMismatchError(f"key is for {c}-channel images but model {name} takes {embed.in_channels} channels")
        model_size = getattr(model, "image_size", None)
        if model_size is not None and int(model_size) != s:
            raise KeyMismatchError(f"key is for {s}×{s} images but model {name} takes {model_size}×{model_size} images")
        if key.scheme == "vit" and getattr(model, "pos_embed", None) is None:
            raise KeyMismatchError(f"a vit key permutes blocks, which needs a position embedding (ViT); model {name} has none")


def _params(scheme: str, block_size: int, channels: int, image_size: int, ea: str) -> dict[str, Any]:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown key scheme {scheme!r}; expected {' or '.join(map(repr, SCHEMES))}")
    if block_size < 1 or channels < 1 or image_size < 1:
        raise ConfigError(f"block size, channels and image size must be positive; got {block_size}, {channels}, {image_size}")
    if image_size % block_size:
        raise ConfigError(f"image size {image_size} is not divisible by block size {block_size}")
    params: dict[str, Any] = {"block_size": block_size, "channels": channels, "image_size": image_size}
    if scheme == "vit":
        if ea not in (*EA_KINDS, EA_MATRIX):
            raise ConfigError(f"unknown Ea kind {ea!r}; expected one of {', '.join(EA_KINDS)}")
        params["ea"] = ea
    return params


def _check_condition(ea: torch.Tensor) -> None:
    cond = float(torch.linalg.cond(ea))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        raise ConfigError(f"Ea is ill-conditioned (condition number {cond:.3g} > {MAX_CONDITION:.0e}); choose a better conditioned invertible matrix")


def _permutation(values: Any, n: int, name: str, key: keys.Key) -> torch.Tensor:
    try:
        perm = torch.tensor(values, dtype=torch.long)
    except (TypeError, ValueError, RuntimeError):
        perm = None
    if perm is None or perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
        raise KeyFileError(f"key {key.fingerprint[:19]}: {name} is not a permutation of {n} elements")
    return perm


def _subset(values: Any, n: int, key: keys.Key) -> torch.Tensor:
    try:
        idx = torch.tensor(values, dtype=torch.long)
    except (TypeError, ValueError, RuntimeError):
        idx = None
    if idx is None or idx.shape != (n // 2,) or idx.unique().numel() != n // 2 or (idx.numel() and (idx.min() < 0 or idx.max() >= n)):
        raise KeyFileError(f"key {key.fingerprint[:19]}: flip must select {n // 2} distinct positions of {n}")
    return idx
