"""Encrypting and decrypting images with a key (client side).

ConvMixer paper, Sec. 3.2 (Fig. 3): block segmentation, pixel shuffling (Eq. 4), negative-positive
flip (Eq. 5-6), block integration. ViT paper, Sec. 3.3: block permutation B̂ = B·Eb (Eq. 9-10)
and b̂ = b·Ea⁻¹ for every flattened block (Eq. 11-13). See :mod:`veilnet.keyed.schemes` for the
common form b̂ = (b − ½)·Ea⁻¹ + ½.

Everything is whole-tensor code. When Ea is a signed permutation the whole transform is one
gather over the flattened image (an index map built once per key) followed by one flip pass;
uint8 images stay uint8 and the flip is the paper's XOR with 255 (Eq. 5), so 8-bit images
round-trip exactly. A general Ea is one batched matrix product over the blocks.
"""

from __future__ import annotations

import torch

from veilnet import keys
from veilnet.errors import ShapeError
from veilnet.keyed.schemes import Cipher, check_fits, cipher


def encrypt_images(images: torch.Tensor, key: keys.Key) -> torch.Tensor:
    """Encrypt ``images`` (N×C×S×S, float in [0, 1] or uint8) with ``key``.

    Returns images of the same dtype when the key keeps images images (signed-permutation Ea:
    block scheme, ViT 'permutation'/'signed-permutation'), float32 otherwise.
    Raises KeyMismatchError when the images do not fit the key.
    """
    check_fits(key, image_shape=images.shape)
    return apply_cipher(images, cipher(key))


def decrypt_images(images: torch.Tensor, key: keys.Key) -> torch.Tensor:
    """Invert :func:`encrypt_images`: ``decrypt_images(encrypt_images(x, k), k) == x`` (exactly for uint8)."""
    check_fits(key, image_shape=images.shape)
    return apply_cipher(images, cipher(key), inverse=True)


def to_blocks(images: torch.Tensor, block_size: int) -> torch.Tensor:
    """N×C×H×W -> N×T×L: the T = HW/M² blocks in raster order, each flattened in (C, M, M) order
    (the order of a kernel=stride=M convolution's weights, so block i is the patch x_p^i of Eq. 1)."""
    n, c, h, w = images.shape
    m = block_size
    x = images.reshape(n, c, h // m, m, w // m, m).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // m) * (w // m), c * m * m)


def from_blocks(blocks: torch.Tensor, block_size: int, channels: int, image_size: int) -> torch.Tensor:
    """Inverse of :func:`to_blocks`."""
    n = blocks.shape[0]
    m, c, g = block_size, channels, image_size // block_size
    x = blocks.reshape(n, g, g, c, m, m).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, image_size, image_size)


def apply_cipher(images: torch.Tensor, ciph: Cipher, *, inverse: bool = False) -> torch.Tensor:
    """Encrypt (or with ``inverse`` decrypt) images with a :class:`Cipher` (e.g. one recovered by an attack)."""
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ShapeError(f"expected uint8 or float images, got dtype {images.dtype}")
    if ciph.keeps_images:
        index, flip = _index_map(ciph, inverse=inverse)
        flat = images.reshape(images.shape[0], -1)
        out = torch.gather(flat, 1, index.to(images.device).expand_as(flat))
        flip = flip.to(images.device)
        if images.dtype == torch.uint8:
            out.bitwise_xor_(flip.to(torch.uint8) * 255)  # Eq. 5: x ⊕ (2^8 − 1) = 255 − x
        else:
            rf = flip.to(out.dtype)
            torch.addcmul(rf, out, 1 - 2 * rf, out=out)  # r + (1 − 2r)·x: 1 − x where r = 1 (Eq. 6)
        return out.reshape(images.shape)
    return _apply_matrix(images, ciph, inverse=inverse)


def _apply_matrix(images: torch.Tensor, ciph: Cipher, *, inverse: bool) -> torch.Tensor:
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images
    blocks = to_blocks(x, ciph.block_size)
    if ciph.block_perm is not None and not inverse:
        blocks = blocks[:, ciph.block_perm]  # B̂_i = B_{l_e(i)}, Eq. 9
    mat = ciph.ea if inverse else torch.linalg.inv(ciph.ea)  # b̂ = (b − ½)·Ea⁻¹ + ½ (Eq. 12) and back
    blocks = (blocks - 0.5).matmul(mat.to(x)).add_(0.5)
    if ciph.block_perm is not None and inverse:
        blocks = blocks[:, torch.argsort(ciph.block_perm)]
    return from_blocks(blocks, ciph.block_size, ciph.channels, ciph.image_size)


def _index_map(ciph: Cipher, *, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gather index and flip mask over one C×S×S image for a signed-permutation key.

    Encryption: y.flat[j] = flip[j] ? 1 − x.flat[index[j]] : x.flat[index[j]] (Eq. 4-6, 9).
    Decryption gathers with the inverse index and flips at the same (now source) positions.
    """
    assert ciph.shuffle is not None and ciph.flip is not None
    c, s, m = ciph.channels, ciph.image_size, ciph.block_size
    source = to_blocks(torch.arange(c * s * s).reshape(1, c, s, s), m)[0]  # T×L flat indices
    if ciph.block_perm is not None:
        source = source[ciph.block_perm]
    source = source[:, ciph.shuffle]
    index = from_blocks(source[None], m, c, s).reshape(-1)
    flip = from_blocks(ciph.flip.expand(source.shape)[None], m, c, s).reshape(-1)
    if inverse:
        inv = torch.argsort(index)
        return inv, flip[inv]
    return index, flip


__all__ = ["apply_cipher", "decrypt_images", "encrypt_images", "from_blocks", "to_blocks"]
