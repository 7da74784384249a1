"""``veilnet keyed``: transform models and images with a key, re-key, evaluate, attack.

Keys come from ``veilnet key new --scheme block|vit ...`` (see :mod:`veilnet.keys_cli`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veilnet import keys
from veilnet.cli import add_device, add_group, add_output, add_seed
from veilnet.errors import DataFormatError, ModelFormatError, OutputExistsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".npy"}


def _load_key(path: str) -> keys.Key:
    key = keys.load(path)
    from veilnet.keyed.schemes import cipher

    cipher(key)  # validates scheme, parameters and material
    return key


def _split(spec: str, split: str, n_per_class: int | None, seed: int | None) -> Any:
    from veilnet import data

    loaded = data.load(spec, split)
    return loaded if n_per_class is None else data.subset(loaded, n_per_class, seed=seed)


def _transform_model(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.keyed import public_params
    from veilnet.keyed.transform import transform_model

    key = _load_key(args.key)
    model = models.load(args.model)
    card = model.veilnet_card
    if "keyed" in card.get("extra", {}):
        raise ModelFormatError(f"{args.model} is already transformed with key {card['extra']['keyed'].get('fingerprint', '?')}; use 'veilnet keyed rekey'")
    out = models.save(transform_model(model, key), args.output, data=card.get("data"), metrics=card.get("metrics"), extra={**card.get("extra", {}), "keyed": public_params(key)}, force=args.force)
    print(f"{card['architecture']} transformed with key {key.fingerprint} -> {out}")
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.keyed import public_params
    from veilnet.keyed.transform import rekey

    old, new = _load_key(args.old_key), _load_key(args.new_key)
    model = models.load(args.model)
    card = model.veilnet_card
    recorded = card.get("extra", {}).get("keyed", {}).get("fingerprint")
    if recorded is not None and recorded != old.fingerprint:
        from veilnet.errors import KeyMismatchError

        raise KeyMismatchError(f"{args.model} was transformed with key {recorded}, not with the old key {old.fingerprint}")
    out = models.save(rekey(model, old, new), args.output, data=card.get("data"), metrics=card.get("metrics"), extra={**card.get("extra", {}), "keyed": public_params(new)}, force=args.force)
    print(f"re-keyed {old.fingerprint} -> {new.fingerprint}: {out}")
    return 0


def _read_inputs(items: list[str], args: argparse.Namespace) -> tuple[torch.Tensor, list[str], list[int] | None]:
    """Images (uint8 or float) with output names and labels, from a data spec or image files."""
    if len(items) == 1 and Path(items[0]).suffix.lower() not in IMAGE_SUFFIXES:
        split = _split(items[0], args.split, args.n_per_class, args.seed)
        images = split.images if args.limit is None else split.images[: args.limit]
        labels = split.labels[: images.shape[0]].tolist()
        return images, [f"{i:05d}" for i in range(images.shape[0])], labels
    from PIL import Image

    arrays = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such image file (and not a data spec)")
        try:
            if path.suffix.lower() == ".npy":
                arrays.append(torch.from_numpy(np.load(path, allow_pickle=False)).float())
            else:
                with Image.open(path) as img:
                    arr = np.asarray(img.convert("L" if args.channels == 1 else "RGB"))
                arrays.append(torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1))
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot read image ({exc})") from None
    if len({(a.dtype, tuple(a.shape)) for a in arrays}) != 1:
        raise DataFormatError("input images differ in size, channels or type; give images of one shape")
    return torch.stack(arrays), [Path(i).stem for i in items], None


def _transform_images(args: argparse.Namespace) -> int:
    from PIL import Image

    from veilnet.keyed import cipher, decrypt_images, encrypt_images

    key = _load_key(args.key)
    args.channels = int(key.params["channels"])
    images, names, labels = _read_inputs(args.inputs, args)
    out = (decrypt_images if args.decrypt else encrypt_images)(images, key)
    outdir = Path(args.output)
    png = args.decrypt or out.dtype == torch.uint8 or cipher(key).keeps_images  # decrypted images are images
    suffix = ".png" if png else ".npy"
    paths = [outdir / f"{name}{suffix}" for name in names]
    clash = next((p for p in paths if p.exists()), None)
    if clash is not None and not args.force:
        raise OutputExistsError(f"{clash} exists; pass --force to overwrite")
    outdir.mkdir(parents=True, exist_ok=True)
    if png and out.is_floating_point():
        out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    for path, img in zip(paths, out, strict=True):
        if png:
            arr = img.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path)
        else:
            np.save(path, img.float().numpy())
    manifest = {"key": key.fingerprint, "decrypted" if args.decrypt else "encrypted": True, "files": [p.name for p in paths], "labels": labels}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(paths)} images {'decrypted' if args.decrypt else 'encrypted'} with {key.fingerprint} -> {outdir} ({suffix[1:]})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.keyed.evaluation import evaluate, markdown, plot_random_keys

    key = _load_key(args.key)
    model = models.load(args.model, device=args.device)
    if "keyed" in model.veilnet_card.get("extra", {}):
        raise ModelFormatError(f"{args.model} is a transformed model; 'keyed evaluate' takes the PLAIN model and transforms it with --key")
    outdir = Path(args.output)
    if (outdir / "evaluation.json").exists() and not args.force:
        raise OutputExistsError(f"{outdir / 'evaluation.json'} exists; pass --force to overwrite")
    split = _split(args.data, args.split, args.n_per_class, None)
    result = evaluate(model, key, split.images, split.labels, random_keys=args.random_keys, seed=args.seed, data=f"{args.data} ({args.split}{'' if args.n_per_class is None else f', first {args.n_per_class} per class'})", device=args.device)
    result.save(outdir / "evaluation.json")
    table = markdown(result)
    (outdir / "table.md").write_text(table + "\n")
    plot_random_keys(result, outdir / "random_keys.png")
    print(table)
    print(f"-> {outdir}/evaluation.json, table.md, random_keys.png")
    return 0


def _attack(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise OutputExistsError(f"{out} exists; pass --force to overwrite")
    result = args.attack(args)
    result.save(out)
    print(result.to_json(), end="")
    return 0


def _known_plaintext(args: argparse.Namespace) -> Any:
    from veilnet.attacks import known_plaintext_attack

    key = _load_key(args.key)
    split = _split(args.data, args.split, None, None)
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(args.seed or 0))[: args.pairs + args.holdout]
    return known_plaintext_attack(key, split.images[idx], holdout=args.holdout)


def _weight_matching(args: argparse.Namespace) -> Any:
    from veilnet import models
    from veilnet.attacks import weight_matching_attack

    return weight_matching_attack(models.load(args.transformed), models.load(args.plain), _load_key(args.key))


def _ciphertext_only(args: argparse.Namespace) -> Any:
    from veilnet.attacks import ciphertext_only_attack

    key = _load_key(args.key)
    gen = torch.Generator().manual_seed(args.seed or 0)
    test, train = _split(args.data, "test", None, None), _split(args.data, "train", None, None)
    enc = test.images[torch.randperm(len(test), generator=gen)[: args.encrypted]]
    ref = train.images[torch.randperm(len(train), generator=gen)[: args.reference]]
    return ciphertext_only_attack(key, enc, ref)


def _random_keys(args: argparse.Namespace) -> Any:
    from veilnet import models
    from veilnet.attacks import random_keys_attack

    model = models.load(args.model, device=args.device)
    params = model.veilnet_card.get("extra", {}).get("keyed")
    if params is None:
        raise ModelFormatError(f"{args.model} has no 'keyed' entry in its card: not a transformed model")
    split = _split(args.data, args.split, args.n_per_class, None)
    return random_keys_attack(model, params, split.images, split.labels, n_keys=args.random_keys, seed=args.seed, device=args.device)


def _data_options(parser: argparse.ArgumentParser, *, split: bool = True, subset: bool = True) -> None:
    parser.add_argument("--data", required=True, help="data spec, e.g. digits or folder:PATH.zip")
    if split:
        parser.add_argument("--split", default="test", choices=["train", "test"], help="split (default: test)")
    if subset:
        parser.add_argument("--n-per-class", type=int, default=None, help="first N images of every class (default: all)")


def register(sub: argparse._SubParsersAction) -> None:
    keyed_sub = add_group(sub, "keyed", "keyed models: encrypt images, transform models (ConvMixer, ViT), evaluate, attack")

    tm = keyed_sub.add_parser("transform-model", help="transform a plain ConvMixer/ViT with a key (card records public key parameters only)")
    tm.add_argument("model", help="plain model (.safetensors, .json, stem or directory)")
    tm.add_argument("--key", required=True, help="key file")
    add_output(tm, help="output stem or directory")
    tm.set_defaults(func=_transform_model)

    ti = keyed_sub.add_parser("transform-images", help="encrypt (or --decrypt) images: PNG where they stay images, .npy otherwise")
    ti.add_argument("inputs", nargs="+", metavar="SPEC_OR_FILES", help="a data spec (e.g. folder:PATH.zip) or image files (.png/.jpg/.npy)")
    ti.add_argument("--key", required=True, help="key file")
    ti.add_argument("--split", default="test", choices=["train", "test"], help="split of a data spec (default: test)")
    ti.add_argument("--n-per-class", type=int, default=None, help="first N images of every class of a data spec")
    ti.add_argument("--limit", type=int, default=None, help="at most N images of a data spec")
    ti.add_argument("--decrypt", action="store_true", help="decrypt instead of encrypt")
    add_seed(ti)
    add_output(ti, help="output directory")
    ti.set_defaults(func=_transform_images)

    rk = keyed_sub.add_parser("rekey", help="move a transformed model to a new key without retraining")
    rk.add_argument("model", help="transformed model")
    rk.add_argument("--old-key", required=True, help="key the model is transformed with")
    rk.add_argument("--new-key", required=True, help="new key")
    add_output(rk, help="output stem or directory")
    rk.set_defaults(func=_rekey)

    ev = keyed_sub.add_parser("evaluate", help="Table 1 / Fig. 5: plain vs transformed accuracy, random wrong keys, key space")
    ev.add_argument("model", help="the PLAIN model (transformed with --key in memory)")
    ev.add_argument("--key", required=True, help="key file")
    _data_options(ev)
    ev.add_argument("--random-keys", type=int, default=100, help="number of random wrong keys (default: 100)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the random wrong keys (default: 0)")
    add_device(ev)
    add_output(ev, help="output directory (evaluation.json, table.md, random_keys.png)")
    ev.set_defaults(func=_evaluate)

    at = keyed_sub.add_parser("attack", help="attacks on a keyed model: known-plaintext, weight-matching, ciphertext-only, random-keys")
    at_sub = at.add_subparsers(dest="attack_kind", required=True, metavar="KIND", parser_class=type(at))
    kp = at_sub.add_parser("known-plaintext", help="recover the key from (plain, encrypted) pairs (the key file scores the result)")
    kp.add_argument("--key", required=True, help="the true key (used to encrypt the pairs and to score)")
    _data_options(kp, subset=False)
    kp.add_argument("--pairs", type=int, default=64, help="most pairs to try (1, 2, 4, ... up to this; default 64)")
    kp.add_argument("--holdout", type=int, default=16, help="images kept to test decryption (default 16)")
    add_seed(kp)
    kp.set_defaults(attack=_known_plaintext)
    wm = at_sub.add_parser("weight-matching", help="recover the key from the transformed model and the plain model it came from")
    wm.add_argument("transformed", help="transformed model")
    wm.add_argument("--plain", required=True, help="the plain model")
    wm.add_argument("--key", required=True, help="the true key (used to score only)")
    wm.set_defaults(attack=_weight_matching)
    co = at_sub.add_parser("ciphertext-only", help="estimate a block key from encrypted test images and unrelated plain train images")
    co.add_argument("--key", required=True, help="the true key (used to encrypt and to score)")
    _data_options(co, split=False, subset=False)
    co.add_argument("--encrypted", type=int, default=1000, help="encrypted test images seen (default 1000)")
    co.add_argument("--reference", type=int, default=1000, help="unrelated plain train images (default 1000)")
    add_seed(co)
    co.set_defaults(attack=_ciphertext_only)
    rn = at_sub.add_parser("random-keys", help="accuracy of a transformed model with random wrong keys (parameters from its card)")
    rn.add_argument("model", help="transformed model")
    _data_options(rn)
    rn.add_argument("--random-keys", type=int, default=100, help="number of random keys (default 100)")
    rn.add_argument("--seed", type=int, default=0, help="seed of the random keys (default 0)")
    add_device(rn)
    rn.set_defaults(attack=_random_keys)
    for p in (kp, wm, co, rn):
        add_output(p, help="output JSON file")
        p.set_defaults(func=_attack)
