"""ConvMixer paper Table 1 / Fig. 5 and the same for ViT, on trained models and the JPEG CIFAR-10.

    python benchmarks/keyed_models.py [--quick] [--convmixer PATH] [--vit PATH]

For each trained model (default: the lead's runs/train/convmixer and runs/train/vit, made with
``veilnet train``): accuracy of plain model / plain images, transformed model / encrypted images,
transformed model / plain images, plain model / encrypted images, and the transformed model on
images encrypted with random wrong keys (box plot PNG beside the JSON), with the exact key space.
The key is drawn from ``--key-seed`` (default 0) so that a rerun gives the same numbers; the
random wrong keys come from their own stream of seed 0 and are never the key.
ConvMixer uses the block key (paper); ViT the ViT key with a permutation Ea (paper's Fig. 2) and
with an orthogonal Ea. Test subset: the first ``--n-per-class`` test images of every class.
``--quick``: 20 per class and 10 random keys. ``--train-if-missing``: when a trained model is
absent, train a small one here first (``veilnet.training``, ``--train-per-class`` images per class
for ``--train-epochs`` epochs) and say so in the output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from _common import REPO, add_zip, write_result
from veilnet import data, models, training
from veilnet.keyed import evaluate, generate_key
from veilnet.keyed.evaluation import markdown, plot_random_keys


def trained_model_dir(arch: str) -> Path:
    """The lead's trained model: runs/train/ARCH, else runs/train/ARCH-cifar10 (``veilnet train``)."""
    plain = REPO / "runs" / "train" / arch
    return plain if plain.exists() else REPO / "runs" / "train" / f"{arch}-cifar10"


#: Small models trained here when the lead's are missing (``--train-if-missing``).
SMALL = {
    "convmixer": ({"dim": 64, "depth": 4, "kernel_size": 5, "patch_size": 4}, 0.005),
    "vit": ({"image_size": 32, "patch_size": 4, "dim": 64, "depth": 3, "heads": 4, "mlp_dim": 128}, 0.001),
}


def train_small(arch: str, spec: str, out: Path, per_class: int, epochs: int) -> Path:
    """Train a small ``arch`` on ``per_class`` train images per class (AdamW, cosine) into ``out``."""
    kwargs, lr = SMALL[arch]
    split = data.subset(data.load(spec, "train"), per_class, seed=0)
    config = training.TrainConfig(epochs=epochs, optimizer="adamw", lr=lr, weight_decay=0.05, warmup_epochs=0.5, label_smoothing=0.1)
    training.train(models.create(arch, **kwargs), split, out, config=config, force=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 images per class, 10 random keys")
    add_zip(parser)
    parser.add_argument("--convmixer", type=Path, default=trained_model_dir("convmixer"), help="trained ConvMixer (default: runs/train/convmixer[-cifar10])")
    parser.add_argument("--vit", type=Path, default=trained_model_dir("vit"), help="trained ViT (default: runs/train/vit[-cifar10])")
    parser.add_argument("--n-per-class", type=int, default=None, help="test images per class (default 100; quick 20)")
    parser.add_argument("--random-keys", type=int, default=None, help="random wrong keys (default 100; quick 10)")
    parser.add_argument("--train-if-missing", action="store_true", help="train a small model here when a trained one is missing")
    parser.add_argument("--train-per-class", type=int, default=1000, help="train images per class for --train-if-missing (default 1000)")
    parser.add_argument("--train-epochs", type=int, default=4, help="epochs for --train-if-missing (default 4)")
    parser.add_argument("--key-seed", type=int, default=0, help="seed of the key (default 0; reproducible numbers, not a secret key)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    n_per_class = args.n_per_class or (20 if args.quick else 100)
    n_keys = args.random_keys or (10 if args.quick else 100)
    spec = f"folder:{args.zip}"
    split = data.subset(data.load(spec, "test"), n_per_class)
    subset = f"{spec} test, first {n_per_class} per class"
    name = "keyed_models" + ("_quick" if args.quick else "")
    plots = REPO / "runs" / "benchmarks" / name
    result: dict[str, Any] = {"subset": subset, "n_images": len(split), "random_keys": n_keys, "evaluations": {}}
    for arch, path, kinds in (
        ("convmixer", args.convmixer, [("block", "signed-permutation")]),
        ("vit", args.vit, [("vit", "permutation"), ("vit", "orthogonal")]),
    ):
        if not (path.is_file() or (path / "model.safetensors").exists() or path.with_suffix(".safetensors").exists()):
            if not args.train_if_missing:
                print(f"{arch}: no trained model at {path}; train it with 'veilnet train' or pass --train-if-missing (skipped)")
                continue
            path = train_small(arch, spec, plots / f"trained-{arch}", args.train_per_class, args.train_epochs)
            print(f"{arch}: trained here (small model {SMALL[arch][0]}, {args.train_per_class}/class, {args.train_epochs} epochs) -> {path}")
        model = models.load(path)
        card = models.card(path)
        for scheme, ea in kinds:
            key = generate_key(
                scheme, int(model.patch_size), model.patch_embed.in_channels, split.images.shape[-1], ea=None if scheme == "block" else ea, seed=args.key_seed
            )
            tic = time.perf_counter()
            res = evaluate(model, key, split.images, split.labels, random_keys=n_keys, seed=0, data=subset)
            label = f"{arch}/{scheme}/{ea}"
            result["evaluations"][label] = {
                **res.to_dict(),
                "model": str(path),
                "kwargs": card["kwargs"],
                "train_metrics": card.get("metrics", {}),
                "key_seed": args.key_seed,
                "seconds": time.perf_counter() - tic,
            }
            plot_random_keys(res, plots / f"{label.replace('/', '_')}.png")
            print(f"\n{label} ({path}, {card['kwargs']}; {len(split)} images; key seeded {args.key_seed}, wrong keys from their own stream of seed 0)")
            print(markdown(res))
            print(f"logits: max |Δ| / max |logit| = {res.max_relative_logit_difference:.2e}; labels identical: {res.labels_identical}")
    print(f"-> {write_result(name, result)}")


if __name__ == "__main__":
    main()
