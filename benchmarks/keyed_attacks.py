"""How much of a keyed model's secret the attacks in veilnet.keyed.attacks recover, on the JPEG CIFAR-10.

    python benchmarks/keyed_attacks.py [--quick] [--convmixer PATH] [--vit PATH]

* Known plaintext: pairs needed to recover the whole key, for every kind of key (block; ViT with
  permutation, signed-permutation, orthogonal Ea; ViT with a supplied general invertible Ea),
  and the PSNR of held-out images decrypted with the recovered key. 3 seeds (keys and images).
* One known pair: every one of the 10,000 test images as the only pair, for every generated
  kind of key: how many recover the whole key, and for the grey images (R = G = B), which
  cannot tell the channels apart, the fraction of held-out pixels (16 colour train images)
  that the recovered key decrypts.
* Ciphertext only (block scheme; ViT scheme with a permutation or signed-permutation Ea):
  fraction of the key recovered and PSNR of the attacker's decryptions (also up to a left-right
  mirror), against the number of encrypted test images seen, with 1,000 unrelated plain train
  images as reference. 3 seeds.
* Weight matching: the key from a transformed model and its plain model (the trained models
  given, else the lead's runs/train/{convmixer,vit}, else freshly initialised ones, seeded 0: the
  attack does not depend on training).
``--quick``: 1 seed, fewer sizes, the first 1,000 test images as single pairs.
``--sections``: run only some of known-plaintext, one-pair, ciphertext-only, weight-matching.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from _common import add_zip, markdown_table, write_result
from keyed_models import trained_model_dir
from veilnet import data, models
from veilnet.keyed import generate_key, transform_model, vit_key
from veilnet.keyed.attacks import ciphertext_only_attack, known_plaintext_attack, weight_matching_attack
from veilnet.keyed.attacks.known_plaintext import is_grey

KINDS = [("block", "signed-permutation"), ("vit", "permutation"), ("vit", "signed-permutation"), ("vit", "orthogonal"), ("vit", "matrix")]
SECTIONS = ("known-plaintext", "one-pair", "ciphertext-only", "weight-matching")


def _key(scheme: str, ea: str, seed: int) -> Any:
    if ea == "matrix":  # a general invertible Ea: Gaussian plus a multiple of I (condition ~ 10)
        g = torch.Generator().manual_seed(seed)
        return vit_key(
            torch.randn(48, 48, generator=g, dtype=torch.float64) + 12 * torch.eye(48, dtype=torch.float64), block_size=4, channels=3, image_size=32, seed=seed
        )
    return generate_key(scheme, 4, 3, 32, ea=ea, seed=seed)


def _model(path: Path | None, default: Path, arch: str) -> tuple[torch.nn.Module, str]:
    """The given model, else the lead's trained one, else a freshly initialised one."""
    chosen = path if path is not None else default if (default / "model.safetensors").exists() else None
    if chosen is not None:
        return models.load(chosen), str(chosen)
    kwargs = {"dim": 256, "depth": 8, "kernel_size": 9, "patch_size": 4} if arch == "convmixer" else {"image_size": 32, "patch_size": 4}
    torch.manual_seed(0)
    return models.create(arch, **kwargs).eval(), f"fresh {arch} {kwargs} (seed 0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer sizes")
    add_zip(parser)
    parser.add_argument("--convmixer", type=Path, default=None, help="trained ConvMixer (default: runs/train/convmixer[-cifar10] if present)")
    parser.add_argument("--vit", type=Path, default=None, help="trained ViT (default: runs/train/vit[-cifar10] if present)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = [0] if args.quick else [0, 1, 2]
    spec = f"folder:{args.zip}"
    test, train = data.load(spec, "test").images, data.load(spec, "train").images
    result: dict[str, Any] = {"data": spec, "seeds": seeds, "sections": args.sections}
    if "known-plaintext" in args.sections:
        result["known_plaintext"] = known_plaintext_section(test, seeds)
    if "one-pair" in args.sections:
        result["one_pair"] = one_pair_section(test[:1000] if args.quick else test, train)
    if "ciphertext-only" in args.sections:
        result["ciphertext_only"] = ciphertext_only_section(test, train, seeds, [1, 2, 10, 100] if args.quick else [1, 2, 5, 10, 100, 1000])
    if "weight-matching" in args.sections:
        result["weight_matching"] = weight_matching_section(args)
    result_name = "keyed_attacks" + ("_quick" if args.quick else "") + ("" if args.sections == list(SECTIONS) else "_" + "_".join(args.sections))
    print(f"-> {write_result(result_name, result)}")


def known_plaintext_section(test: torch.Tensor, seeds: list[int]) -> dict[str, Any]:
    rows, kp = [], {}
    for scheme, ea in KINDS:
        runs = []
        for seed in seeds:
            idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:96]
            counts = [1, 2, 4, 8, 16, 32, 49, 64] if ea == "matrix" else None
            runs.append(known_plaintext_attack(_key(scheme, ea, 1000 + seed), test[idx], pair_counts=counts, holdout=16))
        kp[f"{scheme}/{ea}"] = [r.to_dict() for r in runs]
        needed = [r.pairs_needed for r in runs]
        one = [r.trials[0] for r in runs]
        rows.append(
            [
                f"{scheme}, Ea {ea}" if scheme == "vit" else "block (K1 shuffle + K2 flip)",
                ", ".join(map(str, needed)),
                ", ".join(f"{t.score.key_fraction:.3f}" for t in one),
                ", ".join(f"{r.trials[-1].holdout_psnr:.0f}" for r in runs),
            ]
        )
    print(f"Known plaintext (JPEG CIFAR-10 test, random images, seeds {seeds}; 16 held-out images)")
    print(markdown_table(["key", "pairs needed (per seed)", "key fraction from 1 pair", "held-out PSNR dB at the end"], rows))
    return kp


def one_pair_section(pairs: torch.Tensor, train: torch.Tensor) -> dict[str, Any]:
    """Each image of ``pairs`` as the only known pair (keys seeded 4000), held-out: 16 random
    colour train images; the grey pairs (R = G = B) are counted apart."""
    gen = torch.Generator().manual_seed(0)
    colour = train[~is_grey(train)]
    held = colour[torch.randperm(len(colour), generator=gen)[:16]]
    grey = is_grey(pairs)
    rows, out = [], {"n_pairs": len(pairs), "n_grey": int(grey.sum()), "kinds": {}}
    for scheme, ea in KINDS[:4]:
        key = _key(scheme, ea, 4000)
        exact, fraction = [], []
        for i in range(len(pairs)):
            trial = known_plaintext_attack(key, torch.cat([pairs[i : i + 1], held]), pair_counts=[1], holdout=16).trials[0]
            exact.append(trial.score.exact)
            fraction.append(trial.holdout_pixel_fraction)
        ex, fr = torch.tensor(exact), torch.tensor(fraction, dtype=torch.float64)
        entry = {
            "exact": int(ex.sum()),
            "exact_colour": int(ex[~grey].sum()),
            "exact_grey": int(ex[grey].sum()),
            "grey_holdout_pixel_fraction": {"min": fr[grey].min().item(), "median": fr[grey].median().item(), "max": fr[grey].max().item()}
            if grey.any()
            else None,
            "failed_colour_holdout_pixel_fraction": [fr[i].item() for i in torch.nonzero(~ex & ~grey).flatten().tolist()],
        }
        out["kinds"][f"{scheme}/{ea}"] = entry
        g = entry["grey_holdout_pixel_fraction"]
        rows.append(
            [
                f"{scheme}, Ea {ea}" if scheme == "vit" else "block",
                f"{entry['exact_colour']} / {int((~grey).sum())}",
                f"{entry['exact_grey']} / {int(grey.sum())}",
                "–" if g is None else f"{100 * g['min']:.0f}–{100 * g['max']:.0f}% (median {100 * g['median']:.0f}%)",
            ]
        )
    print(
        f"\nOne known pair: each of {len(pairs)} JPEG CIFAR-10 test images as the only "
        f"pair ({int(grey.sum())} grey: R = G = B); held-out: 16 colour train images"
    )
    print(markdown_table(["key", "whole key from a colour pair", "whole key from a grey pair", "held-out pixels decrypted, grey pair"], rows))
    return out


def ciphertext_only_section(test: torch.Tensor, train: torch.Tensor, seeds: list[int], sizes: list[int]) -> dict[str, Any]:
    rows, co = [], {}
    for scheme, ea in KINDS[:3]:
        for n in sizes if scheme == "block" else sizes[-3:]:
            runs = []
            for seed in seeds:
                gen = torch.Generator().manual_seed(seed)
                enc = test[torch.randperm(len(test), generator=gen)[:n]]
                ref = train[torch.randperm(len(train), generator=gen)[:1000]]
                tic = time.perf_counter()
                res = ciphertext_only_attack(generate_key(scheme, 4, 3, 32, ea=ea, seed=2000 + seed), enc, ref)
                runs.append((res, time.perf_counter() - tic))
            co[f"{scheme}/{ea}/{n}"] = [{**r.to_dict(), "seconds": sec} for r, sec in runs]
            fractions = ", ".join(f"{r.score.key_fraction:.2f}" for r, _ in runs)
            rows.append(
                [
                    f"{scheme}, Ea {ea}" if scheme == "vit" else "block",
                    n,
                    fractions,
                    ", ".join(f"{r.encrypted_psnr:.1f}" for r, _ in runs),
                    ", ".join(f"{min(r.decrypted_psnr, 999):.1f}" for r, _ in runs),
                    ", ".join(f"{min(r.mirrored_psnr, 999):.1f}" for r, _ in runs),
                    f"{max(sec for _, sec in runs):.1f}",
                ]
            )
    print(f"\nCiphertext only, M = 4 (encrypted: random test images; reference: 1,000 random train images; seeds {seeds})")
    print(
        markdown_table(
            ["key", "encrypted images", "key fraction", "PSNR encrypted dB", "PSNR attacker-decrypted dB", "same, up to a left-right mirror", "max s"], rows
        )
    )
    return co


def weight_matching_section(args: argparse.Namespace) -> dict[str, Any]:
    rows, wm = [], {}
    for arch, path, default in (("convmixer", args.convmixer, trained_model_dir("convmixer")), ("vit", args.vit, trained_model_dir("vit"))):
        plain, source = _model(path, default, arch)
        for scheme, ea in KINDS[: 1 if arch == "convmixer" else None]:
            key = _key(scheme, ea, 3000)
            res = weight_matching_attack(transform_model(plain, key), plain, key)
            wm[f"{arch}/{scheme}/{ea}"] = {**res.to_dict(), "model": source}
            rows.append([arch, source, f"{scheme}/{ea}", f"{res.score.key_fraction:.3f}", res.score.exact, f"{res.relative_logit_error:.1e}"])
    print("\nWeight matching (transformed model + its plain model)")
    print(markdown_table(["model", "source", "key", "key fraction", "exact", "logit error with recovered key"], rows))
    return wm


if __name__ == "__main__":
    main()
