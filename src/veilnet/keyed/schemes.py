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

Kind of Ea (:func:`ea_kind`, the one place it is derived): the block scheme's Ea is always a
signed permutation, so block key files carry no ``ea`` parameter; a ViT key file always names its
kind (every version of :func:`generate_key` has written it), and :func:`generate_key` draws a
permutation Ea (:data:`DEFAULT_VIT_EA`, the paper's Fig. 2) unless told otherwise.

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
from veilnet.checks import is_int, is_int_list, is_number
from veilnet.errors import ConfigError, KeyFileError, KeyMismatchError, ModelFormatError
from veilnet.report import Result

SCHEMES = ("block", "vit")
EA_KINDS = ("permutation", "signed-permutation", "orthogonal")
#: Ea supplied as an explicit matrix through :func:`vit_key` (recorded as this kind).
EA_MATRIX = "matrix"
#: Kinds of Ea that are signed permutations (encrypted images stay images; the key is discrete).
PERMUTATION_KINDS = ("permutation", "signed-permutation")
#: The block scheme's Ea: pixel shuffle K1 with negative-positive flip K2 (ConvMixer paper, Eq. 4-6).
BLOCK_EA = "signed-permutation"
#: The ViT scheme's Ea when none is asked for: a permutation (the ViT paper's Fig. 2).
DEFAULT_VIT_EA = "permutation"
#: Largest condition number accepted for Ea (larger ones lose the exact identity in float32).
MAX_CONDITION = 1e6
#: Sizes a key is made for, checked before any material is drawn: images up to 4096×4096, and
#: blocks of at most 4096 values (M·M·C; a ViT patch of 32×32×3 is 3072), so a key's
#: permutations and an orthogonal Ea (an L×L matrix) stay small.
MAX_IMAGE_SIZE = 4096
MAX_BLOCK_VALUES = 4096
#: Largest max |EaᵀEa − I| of an Ea recorded as orthogonal.
ORTHOGONAL_TOLERANCE = 1e-6
#: Bits the CSPRNG draws per standard normal (one 53-bit uniform each, Box-Muller in pairs).
BITS_PER_NORMAL = 53
#: The material each kind of Ea stores (ViT keys add ``block_perm``, Eb).
MATERIAL = {"permutation": ("shuffle",), "signed-permutation": ("shuffle", "flip"), "orthogonal": ("ea_matrix",), EA_MATRIX: ("ea_matrix",)}


def ea_kind(scheme: str, params: Mapping[str, Any]) -> str:
    """The kind of Ea of a key of ``scheme`` with public ``params``: :data:`BLOCK_EA` for the
    block scheme, the recorded ``params["ea"]`` for the ViT scheme."""
    return BLOCK_EA if scheme == "block" else str(params["ea"])


class BlockGeometry:
    """The block sizes of a key's images, from its ``block_size`` M, ``channels`` C, ``image_size`` S."""

    block_size: int
    channels: int
    image_size: int

    @property
    def block_len(self) -> int:
        """L = M·M·C, the pixels in one block."""
        return self.block_size * self.block_size * self.channels

    @property
    def num_blocks(self) -> int:
        """N = (S/M)², the blocks in one image."""
        return (self.image_size // self.block_size) ** 2


@dataclass(frozen=True)
class KeyParams(BlockGeometry, Result):
    """A key's public parameters: what a server may know (a transformed model's card holds them)
    and what the attacks are given. ``fingerprint`` names the key (None when unknown)."""

    scheme: str
    block_size: int
    channels: int
    image_size: int
    ea: str
    fingerprint: str | None = None

    @property
    def described(self) -> str:
        """The key's public parameters in words, e.g. ``block key (block size 4, 3 channels, 32×32 images, Ea: signed-permutation)``."""
        s = self.image_size
        return f"{self.scheme} key (block size {self.block_size}, {self.channels} channels, {s}×{s} images, Ea: {self.ea})"

    @classmethod
    def of(cls, key: keys.Key) -> KeyParams:
        """The public parameters of ``key`` (a loaded key is already validated)."""
        p = key.params
        return cls(
            scheme=key.scheme,
            block_size=int(p["block_size"]),
            channels=int(p["channels"]),
            image_size=int(p["image_size"]),
            ea=ea_kind(key.scheme, p),
            fingerprint=key.fingerprint,
        )

    @classmethod
    def from_card(cls, params: Any, where: str = "model card") -> KeyParams:
        """Read a transformed model's card entry ``extra.keyed`` (hostile input: every field is
        checked); raises ModelFormatError naming ``where``."""
        if not isinstance(params, Mapping):
            raise ModelFormatError(f"{where}: extra.keyed is not an object")
        scheme, fingerprint = params.get("scheme"), params.get("fingerprint")
        if scheme not in SCHEMES:
            raise ModelFormatError(f"{where}: extra.keyed has scheme {scheme!r}; expected {' or '.join(map(repr, SCHEMES))}")
        public = {k: params[k] for k in ("block_size", "channels", "image_size", "ea") if k in params}
        if scheme == "block":
            if public.pop("ea", BLOCK_EA) != BLOCK_EA:
                raise ModelFormatError(f"{where}: extra.keyed gives a block key an Ea other than {BLOCK_EA!r}")
        try:
            m, c, s, ea = _check_params(scheme, public)
        except KeyFileError as exc:
            raise ModelFormatError(f"{where}: extra.keyed {exc}") from None
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ModelFormatError(f"{where}: extra.keyed fingerprint is not a string")
        return cls(scheme=scheme, block_size=m, channels=c, image_size=s, ea=ea, fingerprint=fingerprint)


@dataclass(frozen=True)
class Cipher(BlockGeometry):
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

    @classmethod
    def signed_permutation(
        cls, block_size: int, channels: int, image_size: int, shuffle: torch.Tensor, flip: torch.Tensor, block_perm: torch.Tensor | None = None
    ) -> Cipher:
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
    ea: str | None = None,
    seed: int | None = None,
    *,
    rng: keys.KeyRNG | None = None,
) -> keys.Key:
    """A fresh key of ``scheme`` ('block' or 'vit') from the OS CSPRNG (or a seed, reproducibly).

    ``ea`` (ViT scheme) is 'permutation' (default), 'signed-permutation' or 'orthogonal' (Haar,
    by QR of a Gaussian matrix with the signs of R's diagonal moved into Q); the block scheme's
    Ea is always a signed permutation. ``rng`` (instead of ``seed``) draws from a given
    :class:`veilnet.keys.KeyRNG`, e.g. a domain-separated stream.
    """
    if scheme == "block" and ea not in (None, BLOCK_EA):
        raise ConfigError(f"the block scheme's Ea is always a {BLOCK_EA} (shuffle + flip); --ea {ea} is for the vit scheme")
    kind = BLOCK_EA if scheme == "block" else ea or DEFAULT_VIT_EA
    if kind == EA_MATRIX:
        raise ConfigError("an explicit Ea is given with veilnet.keyed.vit_key, not generated")
    params = _params(scheme, block_size, channels, image_size, kind)
    if rng is not None and seed is not None:
        raise ConfigError("give a seed or a KeyRNG, not both")
    rng = rng if rng is not None else keys.KeyRNG(seed)
    length = block_size * block_size * channels
    material: dict[str, Any] = {}
    drawn = 0.0
    if kind in PERMUTATION_KINDS:
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

    Raises ConfigError when Ea is not L×L, not finite, or its condition number exceeds 1e6. Only
    the drawn Eb counts towards ``entropy_bits``: the entropy of a supplied Ea is unknown.
    """
    params = _params("vit", block_size, channels, image_size, EA_MATRIX)
    length = block_size * block_size * channels
    ea = torch.as_tensor(ea_matrix, dtype=torch.float64)
    if ea.shape != (length, length):
        raise ConfigError(f"Ea must be {length}×{length} for block size {block_size} and {channels} channels; got shape {tuple(ea.shape)}")
    problem = _matrix_problem(ea, EA_MATRIX)
    if problem:
        raise ConfigError(f"{problem}; choose a better conditioned invertible matrix")
    blocks = (image_size // block_size) ** 2
    rng = keys.KeyRNG(seed)
    perm = list(block_perm) if block_perm is not None else rng.permutation(blocks)
    drawn = keys.log2_factorial(blocks) if block_perm is None else 0.0
    key = keys.Key(
        scheme="vit",
        params=params,
        material={"ea_matrix": ea.tolist(), "block_perm": perm},
        entropy_bits=rng.entropy_bits(drawn),
        reproducible=rng.reproducible,
    )
    try:
        validate(key)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    return key


def key_space_bits(key: keys.Key | KeyParams | Mapping[str, Any]) -> float:
    """log2 of the number of keys with these parameters (ConvMixer paper, Sec. 4.3), exactly.

    Takes a Key, its :class:`KeyParams`, or a mapping with ``scheme`` and the parameters (e.g. a
    model card's ``extra["keyed"]``). Block scheme: log2(L!) + log2(C(L, ⌊L/2⌋)) with L = M²C
    (247.8 bits for M = 4, C = 3). ViT scheme: log2(N!) plus log2(L!) for a permutation Ea, plus
    the flips for a signed permutation; infinite for a continuous (orthogonal or supplied) Ea.
    """
    p = key if isinstance(key, KeyParams) else KeyParams.of(key) if isinstance(key, keys.Key) else KeyParams.from_card(key, "key parameters")
    shuffle = keys.log2_factorial(p.block_len)
    flips = keys.log2_binomial(p.block_len, p.block_len // 2)
    ea_bits = {"permutation": shuffle, "signed-permutation": shuffle + flips}.get(p.ea, math.inf)
    return ea_bits if p.scheme == "block" else keys.log2_factorial(p.num_blocks) + ea_bits


def public_params(key: keys.Key) -> dict[str, Any]:
    """What a server may know about the key (stored in a transformed model's card): the scheme,
    block size, channels, image size, kind of Ea and the fingerprint; never the material."""
    return KeyParams.of(key).to_dict()


def validate(key: keys.Key) -> None:
    """Check that ``key``'s params and material are exactly what this module writes: integer
    (not float, not bool) sizes and indices in range, permutations of the right length, ``flip``
    ⌊L/2⌋ distinct positions, Ea an L×L matrix of finite numbers that is invertible (condition
    number ≤ 1e6) and, when recorded as orthogonal, orthogonal. Raises KeyFileError (naming what
    is wrong, never the material's values). :func:`veilnet.keys.load` calls it for every file.
    """
    if key.scheme not in SCHEMES:
        raise KeyFileError(f"key has scheme {key.scheme!r}; veilnet.keyed takes {' or '.join(map(repr, SCHEMES))}")
    if not isinstance(key.params, Mapping) or not isinstance(key.material, Mapping):
        raise KeyFileError("params and material must be JSON objects")
    m, c, s, kind = _check_params(key.scheme, key.params)
    length, blocks = m * m * c, (s // m) ** 2
    expected = MATERIAL[kind] + (("block_perm",) if key.scheme == "vit" else ())
    if set(key.material) != set(expected):
        raise KeyFileError(
            f"a {key.scheme} key with Ea {kind!r} holds the material {', '.join(expected)}; "
            f"this one holds {', '.join(sorted(map(str, key.material))) or 'nothing'}"
        )
    mat = key.material
    if "shuffle" in mat:
        _check_permutation(mat["shuffle"], length, "shuffle")
    if "flip" in mat:
        flip = _int_list(mat["flip"], "flip")
        if len(flip) != length // 2 or len(set(flip)) != len(flip) or any(not 0 <= v < length for v in flip):
            raise KeyFileError(f"flip must select {length // 2} distinct positions of 0..{length - 1}")
    if "block_perm" in mat:
        _check_permutation(mat["block_perm"], blocks, "block_perm")
    if "ea_matrix" in mat:
        rows = mat["ea_matrix"]
        if not isinstance(rows, list) or len(rows) != length or any(not isinstance(r, list) or len(r) != length for r in rows):
            raise KeyFileError(f"Ea (ea_matrix) must be a {length}×{length} matrix (a list of {length} rows of {length} numbers)")
        if not all(is_number(v) for r in rows for v in r):
            raise KeyFileError("Ea (ea_matrix) must hold numbers only")
        problem = _matrix_problem(torch.tensor(rows, dtype=torch.float64), kind)
        if problem:
            raise KeyFileError(problem)


def cipher(key: keys.Key) -> Cipher:
    """Validate a key (:func:`validate`) and decode its material into a :class:`Cipher`."""
    try:
        validate(key)
    except KeyFileError as exc:
        raise KeyFileError(f"key {key.fingerprint[:19]}…: {exc}") from None
    p = KeyParams.of(key)
    mat = key.material
    block_perm = torch.tensor(mat["block_perm"], dtype=torch.long) if key.scheme == "vit" else None
    if "ea_matrix" in mat:
        ea = torch.tensor(mat["ea_matrix"], dtype=torch.float64)
        return Cipher(block_size=p.block_size, channels=p.channels, image_size=p.image_size, ea=ea, shuffle=None, flip=None, block_perm=block_perm)
    shuffle = torch.tensor(mat["shuffle"], dtype=torch.long)
    flip = torch.zeros(p.block_len, dtype=torch.bool)
    if "flip" in mat:
        flip[torch.tensor(mat["flip"], dtype=torch.long)] = True
    return Cipher.signed_permutation(p.block_size, p.channels, p.image_size, shuffle, flip, block_perm)


def check_fits(key: keys.Key | KeyParams, *, image_shape: tuple[int, ...] | torch.Size | None = None, model: torch.nn.Module | None = None) -> None:
    """Raise KeyMismatchError when the key (or its public parameters) does not fit the images or
    the model (patch size, channels, image size, position embedding), naming both."""
    p = key if isinstance(key, KeyParams) else KeyParams.of(key)
    m, c, s = p.block_size, p.channels, p.image_size
    if image_shape is not None:
        shape = tuple(image_shape)
        if len(shape) != 4 or shape[1] != c or shape[2] != s or shape[3] != s:
            raise KeyMismatchError(f"key ({p.scheme}, block size {m}) expects images N×{c}×{s}×{s}; got images of shape {shape}")
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
        if p.scheme == "vit" and getattr(model, "pos_embed", None) is None:
            raise KeyMismatchError(f"a vit key permutes blocks, which needs a position embedding (ViT); model {name} has none")


def transformed_with(model: torch.nn.Module) -> str | None:
    """The fingerprint of the key a loaded model's card says it was transformed with (None for
    a plain model or a card that records none)."""
    card = getattr(model, "veilnet_card", None)
    extra = card.get("extra") if isinstance(card, Mapping) else None
    keyed = extra.get("keyed") if isinstance(extra, Mapping) else None
    fingerprint = keyed.get("fingerprint") if isinstance(keyed, Mapping) else None
    return fingerprint if isinstance(fingerprint, str) else None


def check_transformed_with(model: torch.nn.Module, key: keys.Key, *, where: str = "the model") -> None:
    """Raise KeyMismatchError when ``model``'s card says it was transformed with a key other than ``key``."""
    recorded = transformed_with(model)
    if recorded is not None and recorded != key.fingerprint:
        raise KeyMismatchError(f"{where} was transformed with key {recorded[:19]}…, not with key {key.fingerprint[:19]}…")


def _params(scheme: str, block_size: int, channels: int, image_size: int, ea: str) -> dict[str, Any]:
    """The params a new key records (ConfigError for values a user chose badly)."""
    params: dict[str, Any] = {"block_size": block_size, "channels": channels, "image_size": image_size}
    if scheme == "vit":
        params["ea"] = ea
    try:
        _check_params(scheme, params)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    return params


def _check_params(scheme: str, params: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """(M, C, S, kind of Ea) from a key's params, which must be exactly the scheme's names with
    integer sizes ≥ 1, S divisible by M, and (ViT) a known kind of Ea; else KeyFileError."""
    if scheme not in SCHEMES:
        raise KeyFileError(f"unknown key scheme {scheme!r}; expected {' or '.join(map(repr, SCHEMES))}")
    names = ("block_size", "channels", "image_size") + (("ea",) if scheme == "vit" else ())
    if set(params) != set(names):
        raise KeyFileError(f"a {scheme} key's params are {', '.join(names)}; got {', '.join(sorted(map(str, params))) or 'none'}")
    sizes = [params[n] for n in names[:3]]
    for name, value in zip(names, sizes, strict=False):
        if not is_int(value):
            raise KeyFileError(f"{name} must be an integer, got {type(value).__name__} {_short(value)}")
    m, c, s = sizes
    if m < 1 or c < 1 or s < 1:
        raise KeyFileError(f"block size, channels and image size must be positive; got {m}, {c}, {s}")
    if s > MAX_IMAGE_SIZE:
        raise KeyFileError(f"image size {s} is larger than {MAX_IMAGE_SIZE}, the largest a key is made for")
    if m * m * c > MAX_BLOCK_VALUES:
        raise KeyFileError(f"a block holds block size² × channels = {m}² × {c} = {m * m * c} values, more than {MAX_BLOCK_VALUES}; no key is made for it")
    if s % m:
        raise KeyFileError(f"image size {s} is not divisible by block size {m}")
    kind = ea_kind(scheme, params)
    if kind not in MATERIAL:
        raise KeyFileError(f"unknown Ea kind {kind!r}; expected one of {', '.join(EA_KINDS)} (or {EA_MATRIX!r} for a supplied Ea)")
    return m, c, s, kind


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_list(values: Any, name: str) -> list[int]:
    if not is_int_list(values):
        raise KeyFileError(f"{name} must be a list of integers")
    return values


def _check_permutation(values: Any, n: int, name: str) -> None:
    perm = _int_list(values, name)
    if len(perm) != n or sorted(perm) != list(range(n)):
        raise KeyFileError(f"{name} is not a permutation of {n} elements (0..{n - 1}, each once)")


def _matrix_problem(ea: torch.Tensor, kind: str) -> str | None:
    """Why ``ea`` cannot be this kind of Ea (None when it can): not finite, ill-conditioned, or
    recorded as orthogonal but not orthogonal."""
    if not bool(torch.isfinite(ea).all()):
        return "Ea holds non-finite numbers (NaN or infinity)"
    cond = float(torch.linalg.cond(ea))
    if not math.isfinite(cond) or cond > MAX_CONDITION:
        return f"Ea is ill-conditioned (condition number {cond:.3g} > {MAX_CONDITION:.0e})"
    if kind == "orthogonal":
        error = float((ea.T @ ea - torch.eye(ea.shape[0], dtype=ea.dtype)).abs().max())
        if error > ORTHOGONAL_TOLERANCE:
            return f"Ea is recorded as orthogonal but max |EaᵀEa − I| = {error:.3g}"
    return None


__all__ = ["Cipher", "KeyParams", "check_fits", "cipher", "ea_kind", "generate_key", "key_space_bits", "public_params", "vit_key"]
