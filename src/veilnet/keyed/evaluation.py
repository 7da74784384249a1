"""The keyed-model evaluation: ConvMixer paper Table 1 and Fig. 5, and the same for ViT.

Accuracy of the plain model on plain images, the transformed model on encrypted images, the
transformed model on plain images, the plain model on encrypted images, and the transformed
model on images encrypted with random wrong keys; the exact key space beside the entropy drawn.

Random wrong keys (ConvMixer paper, Sec. 4.3 and Fig. 5): the threat is an unauthorised user who
has the transformed model and the public parameters but not the key; a protected model should
stay near chance for every wrong key. The wrong keys come from their own reproducible stream
(:data:`WRONG_KEYS`, :meth:`veilnet.keys.KeyRNG.stream`), never from the integer seeds a user
gives ``key new --seed``, and a draw whose fingerprint is the model's own key is skipped, so a
"wrong" key is never the right one.

Under ``torchrun`` (:mod:`veilnet.distributed`) the ranks share the wrong keys (key j on rank
j mod N, each on all the images; rank 0 draws them) and every rank gets the accuracies in key
order: the one-process result exactly, since a key's accuracy depends on that key alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veilnet import distributed, keys, metrics
from veilnet.errors import ConfigError
from veilnet.keyed.images import encrypt_images
from veilnet.keyed.schemes import EA_MATRIX, KeyParams, generate_key, key_space_bits
from veilnet.keyed.transform import transform_model
from veilnet.progress import bar
from veilnet.report import Result, markdown_table, plot_backend, save_figure

#: Label of the stream the random wrong keys are drawn from (domain separation from user keys).
WRONG_KEYS = "random-wrong-keys"

#: Published figures (fractions): ConvMixer paper Table 1 and Sec. 4.3 (CIFAR-10, ConvMixer-256/8,
#: patch 4, 200 epochs); ViT paper Table 1 (CIFAR-10 at 224×224, ImageNet-pretrained ViT, FedAvg).
PAPER: dict[str, dict[str, float]] = {
    "convmixer": {
        "plain_model_plain_images": 0.9046,
        "transformed_model_encrypted_images": 0.9046,
        "transformed_model_plain_images": 0.1141,
        "key_space_bits": 543.8,
    },
    "vit": {"plain_model_plain_images": 0.978, "transformed_model_encrypted_images": 0.977},
}
#: What each row of :data:`PAPER` was measured on, for the reports that set it beside ours.
PAPER_CONDITIONS = {
    "convmixer": "the ConvMixer paper's Table 1: CIFAR-10, ConvMixer-256/8, patch 4, 200 epochs",
    "vit": "the ViT paper's Table 1: CIFAR-10 at 224×224, an ImageNet-pretrained ViT-B/16 trained with FedAvg",
}


@dataclass(frozen=True)
class RandomKeysResult(Result):
    """Accuracy of the transformed model on images encrypted with each of ``n_keys`` random
    wrong keys (``fingerprints``); ``quartiles`` holds min, q1, median, q3, max (the box of
    Fig. 5); ``seed`` is None when the keys came from the OS CSPRNG, else the seed of the
    :data:`WRONG_KEYS` stream; ``skipped`` counts draws that were the model's own key."""

    n_keys: int
    n_images: int
    seed: int | None
    chance: float
    accuracies: list[float]
    quartiles: dict[str, float]
    fingerprints: list[str]
    skipped: int

    def summary(self) -> str:
        """What was measured, with what, and the result, in words."""
        q = self.quartiles
        spread = f"median {q['median']:.1%} (min {q['min']:.1%}, max {q['max']:.1%})" if q else "none measured"
        return "\n".join(
            [
                f"Random wrong keys: {self.n_keys} keys with the transformed model's public key parameters (from its card), never its own key.",
                f"The attacker had: the transformed model and {self.n_images} test images, encrypted with each wrong key in turn.",
                f"Result: the transformed model's accuracy {spread}; chance is {self.chance:.1%}.",
            ]
        )


def wrong_keys(params: KeyParams, n_keys: int, seed: int | None) -> tuple[list[keys.Key], int]:
    """``n_keys`` random keys with the public ``params`` (scheme, sizes, kind of Ea; a supplied
    Ea is replaced by Haar-orthogonal ones) from the :data:`WRONG_KEYS` stream of ``seed`` (the
    OS CSPRNG when None), none of them the key ``params.fingerprint``; and how many draws were
    skipped for being that key. Raises ConfigError when the key space is too small to find them."""
    kind = "orthogonal" if params.ea == EA_MATRIX else params.ea
    out: list[keys.Key] = []
    skipped = index = 0
    while len(out) < n_keys:
        if index >= 10 * n_keys + 100:
            raise ConfigError(f"found only {len(out)} of {n_keys} random keys other than the model's own in {index} draws: the key space is too small")
        key = generate_key(
            params.scheme,
            params.block_size,
            params.channels,
            params.image_size,
            ea=None if params.scheme == "block" else kind,
            rng=keys.KeyRNG.stream(WRONG_KEYS, seed, index),
        )
        index += 1
        if key.fingerprint == params.fingerprint:
            skipped += 1
            continue
        out.append(key)
    return out, skipped


def evaluate_random_keys(
    transformed: nn.Module,
    params: KeyParams | Mapping[str, Any],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_keys: int = 100,
    seed: int | None = 0,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> RandomKeysResult:
    """Accuracy of ``transformed`` on ``images`` (uint8 or [0, 1]) encrypted with random wrong
    keys (:func:`wrong_keys`) that share the public ``params`` of the key it was transformed
    with (a :class:`KeyParams` or a model card's ``extra.keyed``). Under several processes
    the ranks share the keys (module docstring); rank 0's bar counts the whole job's keys."""
    if not isinstance(params, KeyParams):
        params = KeyParams.from_card(params)
    x = metrics.as_float(images)
    drawn, skipped = distributed.from_main(lambda: wrong_keys(params, n_keys, seed))
    world = distributed.current()
    mine = []
    desc = f"keyed: accuracy under {len(drawn)} random wrong keys on {x.shape[0]} images"
    with bar(desc=desc, total=len(drawn), unit="key", enabled=world.main) as shown:
        for j in range(world.rank, len(drawn), world.size):
            mine.append((j, metrics.accuracy(metrics.predict(transformed, encrypt_images(x, drawn[j]), batch_size=batch_size, device=device), labels)))
            shown.update(min(world.size, len(drawn) - shown.n))  # the keys the other ranks take meanwhile
    accs = [acc for _, acc in sorted((item for part in distributed.gather(mine) for item in part), key=lambda item: item[0])]
    chance = 1.0 / max(int(labels.max()) + 1, 1) if labels.numel() else float("nan")
    return RandomKeysResult(
        n_keys=n_keys,
        n_images=int(x.shape[0]),
        seed=seed,
        chance=chance,
        accuracies=accs,
        quartiles=quartiles(accs),
        fingerprints=[k.fingerprint for k in drawn],
        skipped=skipped,
    )


def quartiles(values: list[float]) -> dict[str, float]:
    """min, q1, median, q3, max (linear interpolation)."""
    if not values:
        return {}
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    return dict(zip(("min", "q1", "median", "q3", "max"), q.tolist(), strict=True))


@dataclass(frozen=True)
class KeyedEvaluation(Result):
    """Table 1 / Fig. 5 numbers for one model and key (accuracies are fractions of ``n_images``)."""

    architecture: str | None
    key: KeyParams
    data: str | None
    n_images: int
    plain_model_plain_images: float
    transformed_model_encrypted_images: float
    transformed_model_plain_images: float
    plain_model_encrypted_images: float
    max_relative_logit_difference: float
    labels_identical: bool
    random_keys: RandomKeysResult
    key_space_bits: float
    key_entropy_bits: float
    paper: dict[str, float]


def evaluate(
    model: nn.Module,
    key: keys.Key,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    random_keys: int = 100,
    seed: int | None = 0,
    data: str | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> KeyedEvaluation:
    """Evaluate the PLAIN ``model`` transformed in memory with ``key`` on ``images``/``labels``."""
    transformed = transform_model(model, key)
    x = metrics.as_float(images)
    enc = encrypt_images(x, key)
    plain_logits = metrics.predict(model, x, batch_size=batch_size, device=device)
    keyed_logits = metrics.predict(transformed, enc, batch_size=batch_size, device=device)
    arch = getattr(model, "veilnet_arch", {}).get("name")
    public = KeyParams.of(key)
    attack = evaluate_random_keys(transformed, public, x, labels, n_keys=random_keys, seed=seed, batch_size=batch_size, device=device)
    return KeyedEvaluation(
        architecture=arch,
        key=public,
        data=data,
        n_images=int(x.shape[0]),
        plain_model_plain_images=metrics.accuracy(plain_logits, labels),
        transformed_model_encrypted_images=metrics.accuracy(keyed_logits, labels),
        transformed_model_plain_images=metrics.accuracy(metrics.predict(transformed, x, batch_size=batch_size, device=device), labels),
        plain_model_encrypted_images=metrics.accuracy(metrics.predict(model, enc, batch_size=batch_size, device=device), labels),
        max_relative_logit_difference=((plain_logits - keyed_logits).abs().max() / plain_logits.abs().max()).item() if plain_logits.numel() else 0.0,
        labels_identical=bool(torch.equal(plain_logits.argmax(1), keyed_logits.argmax(1))),
        random_keys=attack,
        key_space_bits=key_space_bits(key),
        key_entropy_bits=key.entropy_bits,
        paper=PAPER.get(arch or "", {}),
    )


def markdown(result: KeyedEvaluation) -> str:
    """Table 1 (ours beside the paper's) as Markdown, in percent."""
    rows = []
    for label, name in (
        ("plain model / plain images", "plain_model_plain_images"),
        ("transformed model / encrypted images", "transformed_model_encrypted_images"),
        ("transformed model / plain images", "transformed_model_plain_images"),
        ("plain model / encrypted images", "plain_model_encrypted_images"),
    ):
        paper = result.paper.get(name)
        rows.append([label, 100 * getattr(result, name), "" if paper is None else 100 * paper])
    q = result.random_keys.quartiles
    if q:
        rows.append(
            [
                f"transformed model / {result.random_keys.n_keys} random wrong keys (median [min, max])",
                f"{100 * q['median']:.2f} [{100 * q['min']:.2f}, {100 * q['max']:.2f}]",
                "",
            ]
        )
    rows.append(["key space (bits)", result.key_space_bits, result.paper.get("key_space_bits", "")])
    rows.append(["entropy drawn for this key (bits)", result.key_entropy_bits, ""])
    return markdown_table(["", f"ours (n = {result.n_images})", "paper"], rows)


def plot_random_keys(result: KeyedEvaluation, path: str | Path) -> Path:
    """Box plot of the wrong-key accuracies (Fig. 5: whiskers at 1.5 IQR, outliers as dots)."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(3.5, 4))
    ax.boxplot([[100 * a for a in result.random_keys.accuracies]], whis=1.5)
    ax.axhline(100 * result.transformed_model_encrypted_images, color="tab:green", linestyle="--", label="correct key")
    ax.axhline(100 * result.random_keys.chance, color="tab:gray", linestyle=":", label="chance")
    ax.set_xticks([1], [f"{result.random_keys.n_keys} random keys"])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.architecture or 'model'}, {result.key.scheme} key")
    ax.legend(loc="center right", fontsize=8)
    return save_figure(fig, path, dpi=120)


__all__ = ["KeyedEvaluation", "RandomKeysResult", "evaluate", "evaluate_random_keys"]
