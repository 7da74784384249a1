"""Speed of keyed image encryption against a plain copy of the same tensor, and the cost of a
transformed model against the plain one, side by side in one run.

    python benchmarks/keyed_transform.py [--quick]

10,000 CIFAR-10-sized images (3×32×32; random pixels, the transform does not look at values),
block size 4: encrypt/decrypt as uint8 (8-bit images, XOR flip) and float32 ([0, 1] pixels) for
the block key and the ViT keys (permutation: one gather; orthogonal Ea: a block matrix product),
each as a ratio to ``tensor.clone()`` of the same images (the floor: the bytes must be moved once).
Then a ConvMixer-256/8 and a ViT forward pass, plain vs transformed, on the same batch.
``--quick``: 2,000 images, 5 repeats, batch 32 (else 64) for the models.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from _common import markdown_table, timeit, write_result
from veilnet import models
from veilnet.keyed import decrypt_images, encrypt_images, generate_key
from veilnet.keyed.transform import transform_model

THREADS = 2


def _interleaved(fns: dict[str, object], repeats: int) -> dict[str, dict[str, float]]:
    """Median/min/max seconds of each function, repetitions interleaved (same machine load)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        timeit(fn, repeats=1, warmup=1)  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timeit(fn, repeats=1, warmup=0)["median"])
    return {name: {"median": statistics.median(t), "min": min(t), "max": max(t), "repeats": repeats} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    n = 2_000 if args.quick else 10_000
    repeats = 5 if args.quick else 7
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    f32 = u8.float().div_(255)
    keys = {
        "block": generate_key("block", 4, 3, 32, seed=1),
        "vit permutation": generate_key("vit", 4, 3, 32, ea="permutation", seed=2),
        "vit orthogonal": generate_key("vit", 4, 3, 32, ea="orthogonal", seed=3),
    }
    fns: dict[str, object] = {"copy uint8": u8.clone, "copy float32": f32.clone}
    for name, key in keys.items():
        if name != "vit orthogonal":
            fns[f"encrypt {name} uint8"] = lambda k=key: encrypt_images(u8, k)
            fns[f"decrypt {name} uint8"] = lambda k=key: decrypt_images(u8, k)
        fns[f"encrypt {name} float32"] = lambda k=key: encrypt_images(f32, k)
    times = _interleaved(fns, repeats)
    rows, table = [], {}
    for name, t in times.items():
        floor = times["copy uint8" if "uint8" in name else "copy float32"]["median"]
        ratio = t["median"] / floor
        table[name] = {**t, "ratio_to_copy": ratio, "images_per_s": n / t["median"]}
        rows.append([name, f"{1e3 * t['median']:.1f} ({1e3 * t['min']:.1f}–{1e3 * t['max']:.1f})", f"{ratio:.2f}×", f"{n / t['median'] / 1e6:.2f}"])
    print(f"{n} images 3×32×32, block size 4, {THREADS} threads, median of {repeats}")
    print(markdown_table(["operation", "ms median (min–max)", "vs copy", "M images/s"], rows))

    batch = torch.rand(32 if args.quick else 64, 3, 32, 32, generator=gen)
    model_rows, model_table = [], {}
    for arch, kwargs, key in (
        ("convmixer", {"dim": 256, "depth": 8, "kernel_size": 9, "patch_size": 4}, keys["block"]),
        ("vit", {"image_size": 32, "patch_size": 4}, keys["vit orthogonal"]),
    ):
        plain = models.create(arch, **kwargs).eval()
        keyed = transform_model(plain, key).eval()
        enc = encrypt_images(batch, key)
        with torch.no_grad():
            t = _interleaved({"plain": lambda: plain(batch), "transformed": lambda: keyed(enc)}, repeats)
        ratio = t["transformed"]["median"] / t["plain"]["median"]
        model_table[arch] = {**t, "ratio": ratio, "batch": batch.shape[0]}
        model_rows.append([arch, f"{1e3 * t['plain']['median']:.0f}", f"{1e3 * t['transformed']['median']:.0f}", f"{ratio:.3f}"])
    print(f"\nforward pass, batch {batch.shape[0]}")
    print(markdown_table(["model", "plain ms", "transformed ms", "ratio"], model_rows))
    out = write_result(
        "keyed_transform" + ("_quick" if args.quick else ""), {"images": n, "threads": THREADS, "repeats": repeats, "transform": table, "models": model_table}
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
