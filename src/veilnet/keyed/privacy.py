"""The keyed-images method's rows of the privacy benchmark: ``keyed-block`` and ``keyed-vit``.

Both rows follow the papers' deployment: a trusted party trains a plain model for the task, draws
a secret key K from the OS CSPRNG and transforms the model with it (:func:`transform_model`); the
server runs the transformed model; the device sends its images encrypted with K.

* ``keyed-block`` — Kiya et al., "An Encryption Method of ConvMixer Models without Performance
  Degradation", sec. 3.2-3.3: a ConvMixer with patch size M; every M×M block of the image is
  pixel-shuffled and negative-positive flipped with one key (Eq. 4-6), the patch embedding's rows
  permuted and negated to match (Eq. 8-9). Knob: the block size M (the model's patch size, so
  the model is trained per value). Defaults 4, 2, 8 (the first is the quick mode's): the paper's
  M = 4 (8×8 blocks of a 32-px CIFAR image, 4×4 of a 16-px digit) with a finer and a coarser
  one; each divides 16 and 32. At M = 8 (L = 192) the ciphertext-only attack keeps its first
  assignment (:data:`MAX_SWAP_VALUES`).
* ``keyed-vit`` — Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption for
  Privacy-Preserving Image Classification with Vision Transformer", sec. 3.2-3.3: a ViT with
  patch size :data:`VIT_BLOCK`; the blocks are permuted by Eb (Eq. 9-10) and every flattened
  block multiplied by Ea⁻¹ (Eq. 11-13), the patch embedding multiplied by Ea and the position
  embedding permuted by Eb (Eq. 3, 6, 8). Knob: the kind of Ea, an index into
  :data:`~veilnet.keyed.schemes.EA_KINDS` (0 permutation — the paper's Fig. 2 —, 1 signed
  permutation, 2 orthogonal), since the benchmark's knob values are numbers.

In the common form of :mod:`veilnet.keyed.schemes`, the device sends E_K(I) with
b̂ = (b − ½)·Ea⁻¹ + ½ for every block b (moved by Eb in the ViT scheme), and the server computes
f̂(E_K(I)) = f(I) exactly with the transformed embedding Ŵ = W·Eaᵀ, β̂ = β + (W − Ŵ)·½; the
server's answer is the logits (:meth:`Row.receive` is the identity). The encoder is None: the
device's function depends on the key.

Threat (:mod:`veilnet.keyed.attacks.learned_inversion`): the server knows the key's public
parameters and owns plain images of the same kind, but not K. :meth:`KeyedRow.observe` is what it
makes of its own images — each encrypted under a fresh key it draws itself
(:class:`~veilnet.keyed.attacks.learned_inversion.AttackerKeys`), seeded from the attacker's
generator, never the victim's key. :meth:`KeyedRow.attacks` adds the ciphertext-only key recovery
(:func:`veilnet.keyed.attacks.ciphertext_only.recover_key`) on the victim's encrypted images with
the attacker's plain images as the reference, scored on the decryption under the recovered key. It
takes a (signed-)permutation Ea only, so the orthogonal-Ea row has no attack of its own. The
known-plaintext attack needs (plain, encrypted) pairs of the victim's key and the weight-matching
attack the plain model the transformed one came from; the server here has neither (the plain
model is the trusted party's, trained on its own data), so neither is a row attack.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from veilnet import models
from veilnet.checks import is_int
from veilnet.data import ImageSplit
from veilnet.errors import ConfigError
from veilnet.keyed.attacks.ciphertext_only import recover_key
from veilnet.keyed.attacks.learned_inversion import AttackerKeys
from veilnet.keyed.attacks.scoring import score
from veilnet.keyed.images import apply_cipher
from veilnet.keyed.schemes import EA_KINDS, PERMUTATION_KINDS, KeyParams, check_fits, cipher, generate_key
from veilnet.keyed.transform import transform_model
from veilnet.privacy.defences import AttackContext, Defence, Row, Setup

#: The ConvMixer of ``keyed-block`` at the budget's width 1 (``dim`` scales with the width): a
#: small ConvMixer-32/4 with depthwise kernel 5 (the paper's ConvMixer-256/8, kernel 9, is too
#: large for the benchmark's budget).
CONVMIXER = {"dim": 32, "depth": 4, "kernel_size": 5}
#: The ViT of ``keyed-vit`` at the budget's width 1 (``dim`` scales with the width).
VIT = {"dim": 64, "depth": 2, "heads": 4, "mlp_dim": 128}
#: How the ViT trains instead of the shared SGD, under which it does not learn in the budget
#: (measured on the 16-px digits: 0.57–0.62 accuracy under SGD at 0.05, 0.74 under AdamW at 1e-3
#: with a one-epoch warm-up): AdamW at 1e-3, warm-up one epoch, the usual setting for a small ViT.
VIT_TRAINING = {"optimizer": "adamw", "lr": 1e-3, "warmup_epochs": 1.0}
#: The ViT's patch size and so the block size M of its key: 4 px, CIFAR's usual ViT patch (8×8
#: patches of a 32-px image, 4×4 of a 16-px digit); the knob of ``keyed-vit`` is the kind of Ea.
VIT_BLOCK = 4
#: The ciphertext-only attack's local search scores all L(L−1)/2 swaps at once on L×L matrices;
#: above this many values per step (M = 8: L = 192, 6.8e8) it keeps its first assignment.
MAX_SWAP_VALUES = 2**24
#: The local search's swap limit where it runs (recover_key's default).
MAX_SWAPS = 500


class KeyedRow(Row):
    """One keyed row: the plain model ``plain`` (the trusted party's, trained by :meth:`fit`),
    the victim's key (drawn from the OS CSPRNG when the row is built; never printed) and the
    transformed model ``model`` the server runs."""

    encoder = None

    def __init__(self, scheme: str, block_size: int, ea: str | None, plain: nn.Module, setup: Setup) -> None:
        c, s, _ = setup.image_shape
        self._key = generate_key(scheme, block_size, c, s, ea)
        self._cipher = cipher(self._key)
        self.params = KeyParams.of(self._key)
        self.setup = setup
        self.plain = plain.to(setup.device)
        self.model: nn.Module | None = None
        self.sends = f"E_K(I), {scheme} key, M = {block_size}" + (f", Ea {self.params.ea}" if scheme == "vit" else "")

    def fit(self, train: ImageSplit) -> dict[str, float]:
        """Train the plain model for the task, then transform it with the victim's key."""
        figures = self.setup.train(self.plain, train, **(VIT_TRAINING if self.params.scheme == "vit" else {}))
        self.model = transform_model(self.plain, self._key).eval()
        return figures

    def send(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        """E_K(I) under the victim's key (the generator draws nothing: the key is fixed)."""
        check_fits(self._key, image_shape=images.shape)
        return apply_cipher(images, self._cipher), None

    def serve(self, sent: torch.Tensor) -> torch.Tensor:
        """The transformed model on the encrypted images: the plain model's logits on the plain ones."""
        if self.model is None:
            raise ConfigError("the keyed row serves only after fit (the model is transformed once trained)")
        return self.model(sent.to(self.setup.device))

    def observe(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The attacker's images, each under a fresh key of its own stream, seeded from ``generator``."""
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        return AttackerKeys(self.params, seed=seed, fresh_key="image")(images)

    def attacks(self, context: AttackContext) -> list[Any]:
        """The ciphertext-only key recovery, scored on the victim's images decrypted with the
        recovered key; none for a continuous (orthogonal) Ea, which it does not take."""
        if self.params.ea not in PERMUTATION_KINDS:
            return []
        length = self.params.block_len
        swaps = MAX_SWAPS if length * (length - 1) // 2 * length * length <= MAX_SWAP_VALUES else 0
        sent = context.sent.detach().cpu()
        guess, made = recover_key(sent, context.attacker.images, self.params, max_swaps=swaps)
        recovered = score(guess, self._cipher)
        search = "" if swaps else "; no local search at this block size"
        extra = {"swaps": made, "key_fraction": recovered.key_fraction}
        extra.update({name: value for name in ("block_perm_fraction", "shuffle_fraction", "flip_fraction") if (value := getattr(recovered, name)) is not None})
        return [
            context.score(
                "ciphertext-only key recovery",
                f"the victim's images decrypted with the key estimated from their pixel statistics (Ea {self.params.ea}{search})",
                apply_cipher(sent, guess, inverse=True),
                extra=extra,
            )
        ]


def _whole(value: float | None) -> int | None:
    """A knob value that is a whole number as an int (4 and 4.0 alike), else None."""
    if is_int(value) or (isinstance(value, float) and value.is_integer()):
        return int(value)  # type: ignore[arg-type]
    return None


def _dim(base: int, setup: Setup, multiple: int = 1) -> int:
    """``base`` scaled by the budget's width, a positive multiple of ``multiple``."""
    return max(multiple, round(base * setup.budget.width / multiple) * multiple)


def build_block(value: float | None, setup: Setup) -> KeyedRow:
    """``keyed-block`` at block size M = ``value``: a ConvMixer with patch size M and a block key."""
    c, s, _ = setup.image_shape
    m = _whole(value)
    if m is None or m < 1 or s % m:
        raise ConfigError(f"keyed-block's block-size must be a positive divisor of the image size {s}, got {value!r}")
    plain = models.create("convmixer", **{**CONVMIXER, "dim": _dim(CONVMIXER["dim"], setup)}, patch_size=m, num_classes=setup.num_classes, in_channels=c)
    return KeyedRow("block", m, None, plain, setup)


def build_vit(value: float | None, setup: Setup) -> KeyedRow:
    """``keyed-vit`` with the Ea ``EA_KINDS[value]``: a ViT with patch size :data:`VIT_BLOCK` and a ViT key."""
    c, s, _ = setup.image_shape
    kind = _whole(value)
    if kind is None or not 0 <= kind < len(EA_KINDS):
        raise ConfigError(f"keyed-vit's ea must be one of {', '.join(f'{i} ({k})' for i, k in enumerate(EA_KINDS))}, got {value!r}")
    if s % VIT_BLOCK:
        raise ConfigError(f"keyed-vit takes images whose size is a multiple of its block size {VIT_BLOCK}, got {s}")
    heads = VIT["heads"]
    plain = models.create(
        "vit", **{**VIT, "dim": _dim(VIT["dim"], setup, heads)}, image_size=s, patch_size=VIT_BLOCK, num_classes=setup.num_classes, in_channels=c
    )
    return KeyedRow("vit", VIT_BLOCK, EA_KINDS[kind], plain, setup)


DEFENCES = {
    "keyed-block": Defence(
        name="keyed-block",
        method="keyed",
        build=build_block,
        knob="block-size",
        values=(4, 2, 8),
        describe="block-wise pixel shuffle and negative-positive flip of the image, a ConvMixer transformed to match",
        reference='Kiya et al., "An Encryption Method of ConvMixer Models without Performance Degradation", sec. 3.2-3.3',
    ),
    "keyed-vit": Defence(
        name="keyed-vit",
        method="keyed",
        build=build_vit,
        knob="ea",
        values=(0, 1, 2),
        value_names=dict(enumerate(EA_KINDS)),
        describe="block permutation Eb and per-block Ea (0 permutation, 1 signed permutation, 2 orthogonal; the ciphertext-only "
        "attack takes 0 and 1 only), a ViT transformed to match",
        reference='Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption for Privacy-Preserving Image '
        'Classification with Vision Transformer", sec. 3.2-3.3',
    ),
}

__all__ = ["DEFENCES", "KeyedRow", "build_block", "build_vit"]
