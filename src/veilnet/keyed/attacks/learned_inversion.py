"""Learned inversion of keyed images: a U-Net that undoes *any* block key, applied to images
encrypted under a key it never saw — the stronger attack of issue 11 ("the same inverter against
the keyed schemes") beside the key-recovery attacks of :mod:`veilnet.keyed.attacks`.

Schemes attacked: the block scheme of the ConvMixer paper (Kiya et al., "An Encryption Method of
ConvMixer Models without Performance Degradation", Sec. 3.2, Eq. 4-6: per block
``x̂_k = x_{v_k}``, flipped to ``1 − x_{v_k}`` where ``r_k = 1``) and the ViT scheme of the
federated ViT paper (Nagamori & Kiya, Sec. 3.3, Eq. 9-12: ``b̂ = (b − ½)·Ea⁻¹ + ½`` on blocks
moved by Eb). The inverter is the U-Net attacker of Xiang et al., "Interpretable Complex-Valued
Neural Networks for Privacy Protection" (ICLR 2020), section 5.1, trained by
:func:`veilnet.attacks.inversion.train_inverter`.

Threat model: the server (or an eavesdropper) sees the victim's encrypted images ``E_K(I)`` and
knows the key's public parameters (scheme, block size M, channels, image size, kind of Ea: a
transformed model's card holds them), but not the key K. It owns plain images of the same kind
(the data set's ``train`` split; the victim's images are the ``test`` split) and trains

    dec = U_W*,   W* = argmin_W  E_{I, K′} ‖U_W(E_{K′}(I)) − I‖²,

the expectation over its own images I and over keys K′ it draws itself — fresh keys for every
image of every batch (:class:`AttackerKeys`), reproducibly from
``KeyRNG.stream("keyed-inversion-attacker", seed, i)`` — so ``dec`` learns to undo the scheme,
not one key. It then reconstructs ``Î = dec(E_K(I))`` for the victim's images under the victim's
key K — fresh from the OS CSPRNG unless given, so never one of the attacker's keys, which all
come from its own seeded stream.

The result (:class:`~veilnet.attacks.inversion.InversionResult`) scores Î against I beside two
trivial guesses: the attacker's mean image (``baseline``) and the ciphertext itself taken as the
reconstruction (``extra["ciphertext_error"]`` and the other ``ciphertext_*`` metrics: what an
attacker gets by doing nothing). Only the victim key's provenance is recorded, never its
material.

Fresh keys per image or per batch (``fresh_key``), measured on ``digits:size=16`` (block scheme
M = 4; 480 attacker train images, 96 victim test images; U-Net base width 8, 20 epochs, batch 32,
lr 5e-3; each inverter scored on the same images under 4 CSPRNG victim keys; U-Net seeds 0 and
1): a key per image gave a mean error of 0.090 and 0.090 (per key 0.085–0.097, SSIM 0.86), a
key per batch 0.134 and 0.112 (per key 0.107–0.152, SSIM 0.73–0.78), at about the same cost. A
key per image is the default. (A permutation-type key costs about 0.1 ms to draw; an orthogonal
Ea of L = M²C values about 3 ms at M = 4 but seconds at M = 16, where ``"batch"`` is the
affordable choice.)
"""

from __future__ import annotations

from typing import Any

import torch

from veilnet import keys
from veilnet.attacks.inversion import (
    InversionConfig,
    InversionResult,
    ReconstructionMetrics,
    evaluate_reconstruction,
    reconstruct,
    reconstruction_metrics,
    train_inverter,
)
from veilnet.errors import ConfigError, KeyMismatchError, ShapeError
from veilnet.keyed.images import apply_cipher, encrypt_images
from veilnet.keyed.schemes import KeyParams, check_fits, cipher, generate_key
from veilnet.metrics import as_float
from veilnet.report import markdown_table

__all__ = ["ATTACKER_STREAM", "FRESH_KEY", "AttackerKeys", "ciphertext_metrics", "keyed_inversion", "keyed_inversion_table"]

#: The label of the attacker's key stream (:meth:`veilnet.keys.KeyRNG.stream`): domain-separated
#: from every key made with a plain seed (``veilnet key new --seed``) and from the CSPRNG.
ATTACKER_STREAM = "keyed-inversion-attacker"
#: How often the attacker draws a fresh key: for every image, or once per batch.
FRESH_KEY = ("image", "batch")
#: The metrics of :class:`~veilnet.attacks.inversion.ReconstructionMetrics` copied into ``extra``
#: for the ciphertext taken as the guess.
_METRICS = ("error", "mae", "mse", "psnr", "ssim")


def keyed_inversion(
    attacker_images: torch.Tensor,
    victim_images: torch.Tensor,
    *,
    scheme: str = "block",
    block_size: int = 4,
    ea: str | None = None,
    victim_key: keys.Key | None = None,
    config: InversionConfig | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    fresh_key: str = "image",
) -> tuple[InversionResult, torch.Tensor]:
    """Learned inversion of keyed images (module docstring): train a U-Net on the attacker's
    ``(E_{K′}(I), I)`` under its own keys K′, then ``Î = dec(E_K(I))`` for the victim's images.

    Arguments:
        attacker_images, victim_images: ``N×C×S×S`` (uint8, or float in [0, 1]) of one shape;
            disjoint sets (``attacker_split`` / ``victim_split`` name them in the result).
        scheme, block_size, ea: the key's public parameters (``ea`` for the ViT scheme:
            permutation, signed-permutation or orthogonal; an orthogonal Ea gives encrypted
            images outside [0, 1], which the U-Net takes as they are).
        victim_key: the victim's key; it must have these public parameters. None: a fresh key
            from the OS CSPRNG, which the attacker's seeded streams cannot produce. The result
            records only where the key came from, never its material or fingerprint.
        config: the U-Net's training (:class:`InversionConfig`; None: the defaults with
            ``seed``); ``seed`` seeds the attacker's key stream.
        fresh_key: ``"image"`` (default) or ``"batch"``: how often the attacker draws a key.

    Returns the result (metrics, the mean-image baseline, and in ``extra`` the ciphertext taken
    as the guess: ``ciphertext_error``, ``_mae``, ``_mse``, ``_psnr``, ``_ssim``) and Î.
    Raises ConfigError for a bad scheme, Ea or block size (one that does not divide the image
    size), ShapeError for images that are not square or differ in shape, KeyMismatchError for a
    ``victim_key`` of other parameters.
    """
    config = config or InversionConfig(seed=seed)
    attacker, victim = as_float(attacker_images), as_float(victim_images)
    if attacker.shape[1:] != victim.shape[1:]:
        raise ShapeError(f"attacker and victim images must be N×C×S×S of one shape, got {tuple(attacker.shape)} and {tuple(victim.shape)}")
    _, channels, height, width = victim.shape
    if height != width:
        raise ShapeError(f"keyed images are square (S×S), got {height}×{width}")
    # The attacker's first key checks the scheme, Ea and block size (generate_key's own checks).
    probe = generate_key(scheme, block_size, channels, height, ea, rng=keys.KeyRNG.stream(ATTACKER_STREAM, seed, 0))
    params = KeyParams.of(probe)
    if victim_key is None:
        victim_key, provenance = generate_key(scheme, block_size, channels, height, ea), "fresh from the OS CSPRNG, drawn by the attack"
    else:
        provenance = f"given ({'reproducible from a seed' if victim_key.reproducible else 'from the OS CSPRNG'})"
        theirs = KeyParams.of(victim_key)
        if (theirs.scheme, theirs.block_size, theirs.ea) != (params.scheme, params.block_size, params.ea):
            raise KeyMismatchError(
                f"the victim's key is ({theirs.scheme}, block size {theirs.block_size}, Ea {theirs.ea}) but "
                f"the attack was asked for ({params.scheme}, block size {params.block_size}, Ea {params.ea})"
            )
    check_fits(victim_key, image_shape=victim.shape)
    features = AttackerKeys(params, seed=seed, fresh_key=fresh_key)
    inverter = train_inverter(features, attacker, **config.to_dict(), device=device, progress=progress, desc=f"inverter: {scheme}, M={block_size}")
    encrypted = encrypt_images(victim, victim_key)
    rec = reconstruct(inverter, encrypted, device=device)
    doing_nothing = reconstruction_metrics(encrypted, victim)
    result = evaluate_reconstruction(
        f"learned inversion ({scheme}, M={block_size})",
        f"images encrypted with an unseen {scheme} key" + (f" (Ea {params.ea})" if scheme == "vit" else ""),
        rec,
        victim,
        attacker,
        attacker_split=attacker_split,
        victim_split=victim_split,
        seed=seed,
        victim_seed=None,
        config={
            **config.to_dict(),
            "scheme": scheme,
            "block_size": block_size,
            "ea": params.ea,
            "fresh_key": fresh_key,
            "attacker_keys": features.draws,
            "victim_key": provenance,
        },
        extra={f"ciphertext_{name}": getattr(doing_nothing, name) for name in _METRICS},
    )
    return result, rec


class AttackerKeys:
    """The attacker's features: ``images → E_{K′}(images)`` under keys K′ it draws itself.

    The ``i``-th key drawn is :meth:`key` ``(i)``, from ``KeyRNG.stream(ATTACKER_STREAM, seed,
    i)`` with the public parameters ``params``; ``fresh_key="image"`` draws one per image,
    ``"batch"`` one per call. ``draws`` counts the keys drawn so far, so every key the attacker
    ever used is ``key(0) … key(draws − 1)``. Used as :func:`train_inverter`'s ``features_fn``.
    """

    def __init__(self, params: KeyParams, *, seed: int = 0, fresh_key: str = "image") -> None:
        if fresh_key not in FRESH_KEY:
            raise ConfigError(f"fresh_key must be one of {', '.join(FRESH_KEY)}, got {fresh_key!r}")
        self.params = params
        self.seed = int(seed)
        self.fresh_key = fresh_key
        self.draws = 0

    def key(self, index: int) -> keys.Key:
        """The attacker's ``index``-th key (a pure function of the parameters, seed and index)."""
        p = self.params
        return generate_key(
            p.scheme, p.block_size, p.channels, p.image_size, p.ea if p.scheme == "vit" else None, rng=keys.KeyRNG.stream(ATTACKER_STREAM, self.seed, index)
        )

    def _next(self) -> keys.Key:
        self.draws += 1
        return self.key(self.draws - 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = as_float(images)
        if self.fresh_key == "batch":
            return apply_cipher(x, cipher(self._next()))
        return torch.cat([apply_cipher(x[i : i + 1], cipher(self._next())) for i in range(x.shape[0])])


def ciphertext_metrics(result: InversionResult) -> ReconstructionMetrics:
    """The ciphertext-as-guess metrics :func:`keyed_inversion` put in ``result.extra``."""
    return ReconstructionMetrics(**{name: result.extra[f"ciphertext_{name}"] for name in _METRICS}, n=result.n)


def keyed_inversion_table(result: InversionResult) -> str:
    """A Markdown table of a :func:`keyed_inversion` result: the inverter, the ciphertext taken
    as the guess and the attacker's mean image, with error (the paper's E‖Î − I‖, RMS per
    image), MAE, MSE, PSNR (dB) and SSIM on the victim's images."""
    rows: list[tuple[str, ReconstructionMetrics]] = [
        (f"U-Net inverter ({result.attack})", result.metrics),
        ("ciphertext as the guess", ciphertext_metrics(result)),
        ("attacker's mean image", result.baseline),
    ]
    body: list[list[Any]] = [[name, m.error, m.mae, m.mse, m.psnr, m.ssim] for name, m in rows]
    caption = f"{result.features}; attacker: {result.n_attacker} images of {result.attacker_split}, victim: {result.n} images of {result.victim_split}"
    return caption + "\n\n" + markdown_table(["guess", "error E‖Î − I‖", "MAE", "MSE", "PSNR (dB)", "SSIM"], body)
