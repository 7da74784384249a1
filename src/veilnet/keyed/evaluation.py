"""The keyed-model evaluation: ConvMixer paper Table 1 and Fig. 5, and the same for ViT.

Accuracy of the plain model on plain images, the transformed model on encrypted images, the
transformed model on plain images, the plain model on encrypted images, and the transformed
model on images encrypted with random wrong keys; the exact key space beside the entropy drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veilnet import keys, metrics
from veilnet.attacks.random_keys import RandomKeysResult, random_keys_attack
from veilnet.keyed.images import encrypt_images
from veilnet.keyed.schemes import key_space_bits, public_params
from veilnet.keyed.transform import transform_model
from veilnet.report import Result, markdown_table, plot_backend

#: Published figures (fractions): ConvMixer paper Table 1 and Sec. 4.3 (CIFAR-10, ConvMixer-256/8,
#: patch 4, 200 epochs); ViT paper Table 1 (CIFAR-10 at 224×224, ImageNet-pretrained ViT, FedAvg).
PAPER: dict[str, dict[str, float]] = {
    "convmixer": {"plain_model_plain_images": 0.9046, "transformed_model_encrypted_images": 0.9046, "transformed_model_plain_images": 0.1141, "key_space_bits": 543.8},
    "vit": {"plain_model_plain_images": 0.978, "transformed_model_encrypted_images": 0.977},
}


@dataclass(frozen=True)
class KeyedEvaluation(Result):
    """Table 1 / Fig. 5 numbers for one model and key (accuracies are fractions of ``n_images``)."""

    architecture: str | None
    key: dict[str, Any]
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
    attack = random_keys_attack(transformed, public_params(key), x, labels, n_keys=random_keys, seed=seed, batch_size=batch_size, device=device)
    return KeyedEvaluation(
        architecture=arch,
        key=public_params(key),
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
        rows.append([f"transformed model / {result.random_keys.n_keys} random wrong keys (median [min, max])", f"{100 * q['median']:.2f} [{100 * q['min']:.2f}, {100 * q['max']:.2f}]", ""])
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
    ax.set_title(f"{result.architecture or 'model'}, {result.key['scheme']} key")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def demo_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    scheme: str | None = None,
    ea: str = "permutation",
    random_keys: int = 10,
    seed: int | None = None,
    output_dir: str | Path | None = None,
    data: str | None = None,
) -> KeyedEvaluation:
    """The keyed step of ``veilnet demo``: a fresh key for the PLAIN ``model`` (ConvMixer: block
    scheme; ViT: ViT scheme unless ``scheme`` says otherwise), the evaluation, and, when
    ``output_dir`` is given, ``key.json`` (0600), the transformed model ``keyed_model.*`` with
    public key parameters in its card, ``evaluation.json``, ``table.md`` and ``random_keys.png``."""
    from veilnet import models
    from veilnet.keyed.schemes import generate_key

    patch_embed: nn.Conv2d = model.patch_embed
    size = int(getattr(model, "image_size", images.shape[-1]))
    chosen = scheme or ("vit" if getattr(model, "pos_embed", None) is not None else "block")
    key = generate_key(chosen, int(model.patch_size), patch_embed.in_channels, size, ea=ea, seed=seed)
    result = evaluate(model, key, images, labels, random_keys=random_keys, seed=seed, data=data)
    if output_dir is not None:
        out = Path(output_dir)
        key.save(out / "key.json", force=True)
        models.save(transform_model(model, key), out / "keyed_model", data=data, extra={"keyed": public_params(key)}, force=True)
        result.save(out / "evaluation.json")
        (out / "table.md").write_text(markdown(result) + "\n")
        plot_random_keys(result, out / "random_keys.png")
    return result
