"""``veilnet keyed``: transform models and images with a key, re-key, evaluate, attack.

Keys come from ``veilnet key new --scheme block|vit ...`` (see :mod:`veilnet.keyed.keys_cli`). Every
output is checked with :func:`veilnet.paths.prepare_output` before any work starts; torch and the
library modules are imported inside the handlers, so parsing these commands does not import torch.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from veilnet import keys, plugins
from veilnet.cli import add_device, add_group, add_output, add_seed, positive_int, seed
from veilnet.errors import ConfigError, ModelFormatError
from veilnet.paths import prepare_output, write_bytes, write_text


def _split(spec: str, split: str, n_per_class: int | None, seed: int | None) -> Any:
    from veilnet import data

    loaded = data.load(spec, split)
    return loaded if n_per_class is None else data.subset(loaded, n_per_class, seed=seed)


def _prepare_model_output(path: str, force: bool) -> None:
    from veilnet.models.io import prepare_save

    prepare_save(path, force=force)


def _keyed_entry(model: Any) -> Any:
    return model.veilnet_card.get("extra", {}).get("keyed")


def _transform_model(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.keyed import public_params
    from veilnet.keyed.transform import transform_model

    key = keys.load(args.key)
    _prepare_model_output(args.output, args.force)
    model = models.load(args.model)
    card = model.veilnet_card
    if _keyed_entry(model) is not None:
        raise ModelFormatError(
            f"{args.model} is already transformed with key {str(_keyed_entry(model).get('fingerprint', '?'))[:19]}…; use 'veilnet keyed rekey'"
        )
    out = models.save(
        transform_model(model, key),
        args.output,
        data=card.get("data"),
        metrics=card.get("metrics"),
        classes=card.get("classes"),
        extra={**card.get("extra", {}), "keyed": public_params(key)},
        force=args.force,
    )
    print(f"{card['architecture']} transformed with key {key.fingerprint} -> {out}")
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from veilnet import models
    from veilnet.keyed import public_params
    from veilnet.keyed.schemes import check_transformed_with
    from veilnet.keyed.transform import rekey

    old, new = keys.load(args.old_key), keys.load(args.new_key)
    _prepare_model_output(args.output, args.force)
    model = models.load(args.model)
    if _keyed_entry(model) is None:
        raise ModelFormatError(f"{args.model} is a plain model (its card has no 'keyed' entry); transform it with 'veilnet keyed transform-model', not rekey")
    check_transformed_with(model, old, where=args.model)
    card = model.veilnet_card
    out = models.save(
        rekey(model, old, new),
        args.output,
        data=card.get("data"),
        metrics=card.get("metrics"),
        classes=card.get("classes"),
        extra={**card.get("extra", {}), "keyed": public_params(new)},
        force=args.force,
    )
    print(f"re-keyed {old.fingerprint} -> {new.fingerprint}: {out}")
    return 0


def _read_inputs(items: list[str], args: argparse.Namespace, channels: int, *, ciphertexts: bool = False) -> tuple[Any, list[str], list[int] | None]:
    """Images (uint8, or float in [0, 1]) with output names and labels, from a data spec or image
    files; ``ciphertexts``: files are encrypted images of a continuous Ea (finite floats)."""
    import torch

    from veilnet.data.images import IMAGE_SUFFIXES, read_image_files

    if len(items) == 1 and Path(items[0]).suffix.lower() not in IMAGE_SUFFIXES | {".npy"}:
        split = _split(items[0], args.split, args.n_per_class, args.seed)
        images = split.images if args.limit is None else split.images[: args.limit]
        labels = split.labels[: images.shape[0]].tolist()
        return images, [f"{i:05d}" for i in range(images.shape[0])], labels
    if args.labels is not None:
        raise ConfigError("--labels takes a data spec's labels; image files carry none")
    if ciphertexts:
        return torch.from_numpy(_read_ciphertexts(items)), [Path(i).stem for i in items], None
    images = torch.from_numpy(read_image_files(items, channels=channels))
    return images, [Path(i).stem for i in items], None


def _read_ciphertexts(items: list[str]) -> Any:
    """Encrypted images of a continuous Ea (``.npy`` C×H×W float arrays of any finite values:
    they are not pixels, so :func:`veilnet.data.images.as_pixels` does not apply) as N×C×H×W float32."""
    import numpy as np

    from veilnet.errors import DataFormatError

    arrays = []
    for item in items:
        path = Path(item)
        if path.suffix.lower() != ".npy":
            raise DataFormatError(f"{path}: encrypted images of a key with a continuous Ea are .npy arrays, not image files")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataFormatError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise DataFormatError(f"{path}: expected a C×H×W array of finite floats, got {array.dtype} of shape {array.shape}")
        arrays.append(array.astype(np.float32))
    if len({a.shape for a in arrays}) != 1:
        raise DataFormatError("input arrays differ in shape; give encrypted images of one shape")
    return np.stack(arrays)


def _transform_images(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from veilnet.keyed import cipher, decrypt_images, encrypt_images

    key = keys.load(args.key)
    outdir = Path(args.output)
    if args.labels is not None:
        labels_path = Path(args.labels).resolve()
        if labels_path == outdir.resolve() or outdir.resolve() in labels_path.parents:
            raise ConfigError(f"--labels {args.labels} is inside the output folder {outdir}, which is meant for the server; write the labels elsewhere")
        prepare_output(labels_path, force=args.force)
    prepare_output(outdir, force=args.force, exists=["manifest.json"])
    images, names, labels = _read_inputs(args.inputs, args, int(key.params["channels"]), ciphertexts=args.decrypt and not cipher(key).keeps_images)
    out = (decrypt_images if args.decrypt else encrypt_images)(images, key)
    png = args.decrypt or out.dtype == torch.uint8 or cipher(key).keeps_images  # decrypted images are images
    suffix = ".png" if png else ".npy"
    paths = [outdir / f"{name}{suffix}" for name in names]
    if len(set(paths)) != len(paths):
        raise ConfigError("two input files have the same name (stem); their outputs would overwrite each other")
    prepare_output(outdir, force=args.force, exists=[p.name for p in paths], mkdir=True)
    if png and out.is_floating_point():
        out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    for path, img in zip(paths, out, strict=True):
        buffer = io.BytesIO()  # numpy writing a real file loses the reason of a failed write
        if png:
            arr = img.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buffer, format="PNG")
        else:
            np.save(buffer, img.float().numpy())
        write_bytes(path, buffer.getvalue())
    manifest = {"key": key.fingerprint, "decrypted" if args.decrypt else "encrypted": True, "files": [p.name for p in paths]}
    write_text(outdir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    print(f"{len(paths)} images {'decrypted' if args.decrypt else 'encrypted'} with {key.fingerprint} -> {outdir} ({suffix[1:]}; no labels)")
    if args.labels is not None:
        write_text(args.labels, json.dumps({"files": [p.name for p in paths], "labels": labels}, indent=1) + "\n")
        print(f"labels (keep them with the key, not on the server) -> {args.labels}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from veilnet import distributed, models
    from veilnet.devices import resolve_device
    from veilnet.keyed.evaluation import evaluate, markdown, plot_random_keys

    device = resolve_device(args.device)
    key = keys.load(args.key)
    outdir = prepare_output(args.output, force=args.force, exists=["evaluation.json", "table.md", "random_keys.png"])
    with distributed.session(device) as device:  # under torchrun: the ranks share the random keys, rank 0 writes
        model = models.load(args.model, device=device)
        if _keyed_entry(model) is not None:
            raise ModelFormatError(f"{args.model} is a transformed model; 'keyed evaluate' takes the PLAIN model and transforms it with --key")
        split = _split(args.data, args.split, args.n_per_class, None)
        data = f"{args.data} ({args.split}{'' if args.n_per_class is None else f', first {args.n_per_class} per class'})"
        result = evaluate(model, key, split.images, split.labels, random_keys=args.random_keys, seed=args.seed, data=data, device=device)
        if not distributed.is_main():
            return 0
    result.save(outdir / "evaluation.json")
    table = markdown(result)
    write_text(outdir / "table.md", table + "\n")
    plot_random_keys(result, outdir / "random_keys.png")
    print(table)
    print(f"-> {outdir}/evaluation.json, table.md, random_keys.png")
    return 0


def _attack(args: argparse.Namespace) -> int:
    """Run the attack, write its JSON to ``-o``; print a report in words, or with ``--json`` the JSON."""
    out = prepare_output(args.output, force=args.force)
    result = args.attack(args)
    result.save(out)
    if args.json:
        print(result.to_json(), end="")
    else:
        print(f"{result.summary()}\nJSON -> {out}")
    return 0


def _known_plaintext(args: argparse.Namespace) -> Any:
    import torch

    from veilnet.keyed.attacks import known_plaintext_attack

    key = keys.load(args.key)
    split = _split(args.data, args.split, None, None)
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(args.seed or 0))[: args.pairs + args.holdout]
    return known_plaintext_attack(key, split.images[idx], holdout=args.holdout)


def _weight_matching(args: argparse.Namespace) -> Any:
    from veilnet import models
    from veilnet.keyed.attacks import weight_matching_attack

    key = keys.load(args.key)
    transformed = models.load(args.transformed)
    if _keyed_entry(transformed) is None:
        raise ModelFormatError(f"{args.transformed} has no 'keyed' entry in its card: not a transformed model")
    plain = models.load(args.plain)
    if plugins.serving_kind(plain.veilnet_card.get("extra")) is not None:
        raise ModelFormatError(
            f"--plain {args.plain} is a transformed model (its card names a serving kind); give the plain model {args.transformed} came from"
        )
    if _same_weights(plain, transformed):
        raise ModelFormatError(f"--plain {args.plain} has the same weights as {args.transformed}; give the plain model it came from")
    return weight_matching_attack(transformed, plain, key)


def _same_weights(a: Any, b: Any) -> bool:
    import torch

    mine, theirs = a.state_dict(), b.state_dict()
    return mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k]) for k in mine)


def _ciphertext_only(args: argparse.Namespace) -> Any:
    import torch

    from veilnet.keyed.attacks import ciphertext_only_attack

    key = keys.load(args.key)
    gen = torch.Generator().manual_seed(args.seed or 0)
    test, train = _split(args.data, "test", None, None), _split(args.data, "train", None, None)
    enc = test.images[torch.randperm(len(test), generator=gen)[: args.encrypted]]
    ref = train.images[torch.randperm(len(train), generator=gen)[: args.reference]]
    return ciphertext_only_attack(key, enc, ref)


def _random_keys(args: argparse.Namespace) -> Any:
    from veilnet import models
    from veilnet.devices import resolve_device
    from veilnet.keyed.evaluation import evaluate_random_keys
    from veilnet.keyed.schemes import KeyParams, check_fits

    device = resolve_device(args.device)
    model = models.load(args.model, device=device)
    entry = _keyed_entry(model)
    if entry is None:
        raise ModelFormatError(f"{args.model} has no 'keyed' entry in its card: not a transformed model")
    params = KeyParams.from_card(entry, f"{args.model}")
    check_fits(params, model=model)
    split = _split(args.data, args.split, args.n_per_class, None)
    return evaluate_random_keys(model, params, split.images, split.labels, n_keys=args.random_keys, seed=args.seed, device=device)


def _learned_inversion(args: argparse.Namespace) -> int:
    """``keyed attack learned-inversion``: a U-Net trained under the attacker's own keys
    (:func:`veilnet.keyed.attacks.learned_inversion.keyed_inversion`) against a fresh CSPRNG key."""
    from veilnet.attacks.inversion import InversionConfig, save_inversion_grid
    from veilnet.devices import resolve_device
    from veilnet.keyed import encrypt_images, generate_key
    from veilnet.keyed.attacks.learned_inversion import keyed_inversion, keyed_inversion_table

    device = resolve_device(args.device)
    config = InversionConfig(epochs=args.epochs, batch_size=args.batch_size, base_width=args.base_width, seed=args.seed)
    outdir = prepare_output(args.output, force=args.force, exists=["result.json", "result.md", "reconstructions.png"])
    attacker = _split(args.data, "train", None, None).images[: args.attacker_images]
    victim = _split(args.data, "test", None, None).images[: args.max_images]
    _, channels, height, _ = victim.shape
    victim_key = generate_key(args.scheme, args.block_size, channels, height, args.ea)  # the victim's secret: OS CSPRNG, never written
    result, rec = keyed_inversion(
        attacker, victim, scheme=args.scheme, block_size=args.block_size, ea=args.ea, victim_key=victim_key, config=config,
        attacker_split=f"{args.data}:train", victim_split=f"{args.data}:test", seed=args.seed, device=device, progress=True, fresh_key=args.fresh_key,
    )  # fmt: skip
    result.save(outdir / "result.json")
    write_text(outdir / "result.md", keyed_inversion_table(result) + "\n")
    save_inversion_grid(
        outdir / "reconstructions.png", victim, {"encrypted": encrypt_images(victim[:8], victim_key), "reconstructed": rec}, title=result.attack
    )
    m, b = result.metrics, result.baseline
    print(
        f"{result.attack}: error {m.error:.4f} (ciphertext {result.extra['ciphertext_error']:.4f}, mean image {b.error:.4f}), PSNR "
        f"{m.psnr:.2f} dB, SSIM {m.ssim:.3f} on {result.n} test images -> {outdir}/result.json, result.md, reconstructions.png"
    )
    return 0


def _data_options(parser: argparse.ArgumentParser, *, split: bool = True, subset: bool = True) -> None:
    parser.add_argument("--data", required=True, help="data spec, e.g. digits or folder:PATH.zip")
    if split:
        parser.add_argument("--split", default="test", choices=["train", "test"], help="split (default: test)")
    if subset:
        parser.add_argument("--n-per-class", type=positive_int, default=None, help="first N images of every class (default: all)")


def _random_keys_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--random-keys", type=positive_int, default=100, help="number of random wrong keys (default: 100)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random wrong keys' own stream, never the key's (default: 0)")


def register(sub: argparse._SubParsersAction) -> None:
    keyed_sub = add_group(sub, "keyed")

    tm = keyed_sub.add_parser("transform-model", help="transform a plain ConvMixer/ViT with a key (card records public key parameters only)")
    tm.add_argument("model", help="plain model (.safetensors, .json, stem or directory)")
    tm.add_argument("--key", required=True, help="key file")
    add_output(tm, help="output stem or directory")
    tm.set_defaults(func=_transform_model)

    ti = keyed_sub.add_parser(
        "transform-images",
        help="encrypt (or --decrypt) images: PNG where they stay images, .npy otherwise",
        description="Encrypt (or --decrypt) images with a key. The output folder holds only the transformed images and "
        "manifest.json (key fingerprint and file names), never labels, so it can be sent to the server as it is. "
        "A data spec's labels are written only with --labels FILE, to a file outside the output folder.",
    )
    ti.add_argument(
        "inputs",
        nargs="+",
        metavar="SPEC_OR_FILES",
        help="a data spec (e.g. folder:PATH.zip) or image files (.png/.jpg/... or .npy C×H×W: uint8, or float in [0, 1])",
    )
    ti.add_argument("--key", required=True, help="key file")
    ti.add_argument("--split", default="test", choices=["train", "test"], help="split of a data spec (default: test)")
    ti.add_argument("--n-per-class", type=positive_int, default=None, help="first N images of every class of a data spec")
    ti.add_argument("--limit", type=positive_int, default=None, help="at most N images of a data spec")
    ti.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="also write the data spec's plain labels to FILE (JSON; must be outside the output folder; never send it to the server)",
    )
    ti.add_argument("--decrypt", action="store_true", help="decrypt instead of encrypt")
    add_seed(ti)
    add_output(ti, help="output directory (images + manifest.json, no labels)")
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
    _random_keys_options(ev)
    add_device(ev)
    add_output(ev, help="output directory (evaluation.json, table.md, random_keys.png)")
    ev.set_defaults(func=_evaluate, torchrun=True)

    at = keyed_sub.add_parser("attack", help="attacks on a keyed model: known-plaintext, weight-matching, ciphertext-only, random-keys, learned-inversion")
    at_sub = at.add_subparsers(dest="attack_kind", required=True, metavar="KIND", parser_class=type(at))
    kp = at_sub.add_parser("known-plaintext", help="recover the key from (plain, encrypted) pairs (the key file scores the result)")
    kp.add_argument("--key", required=True, help="the true key (used to encrypt the pairs and to score)")
    _data_options(kp, subset=False)
    kp.add_argument("--pairs", type=positive_int, default=64, help="most pairs to try (1, 2, 4, ... up to this; default 64)")
    kp.add_argument("--holdout", type=positive_int, default=16, help="images kept to test decryption (default 16)")
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
    co.add_argument("--encrypted", type=positive_int, default=1000, help="encrypted test images seen (default 1000)")
    co.add_argument("--reference", type=positive_int, default=1000, help="unrelated plain train images (default 1000)")
    add_seed(co)
    co.set_defaults(attack=_ciphertext_only)
    rn = at_sub.add_parser("random-keys", help="accuracy of a transformed model with random wrong keys (parameters from its card)")
    rn.add_argument("model", help="transformed model")
    _data_options(rn)
    _random_keys_options(rn)
    add_device(rn)
    rn.set_defaults(attack=_random_keys)
    for p in (kp, wm, co, rn):
        add_output(p, help="output JSON file")
        p.add_argument("--json", action="store_true", help="print the result's JSON instead of a report in words")
        p.set_defaults(func=_attack)
    li = at_sub.add_parser(
        "learned-inversion",
        help="a U-Net trained under keys the attacker draws itself, against images encrypted with an unseen key",
        description="Learned inversion: the attacker trains a U-Net on (encrypted, plain) pairs of the data's train split under "
        "fresh keys of its own, then reconstructs the test split encrypted with a fresh key from the OS CSPRNG (never written). "
        "Writes result.json, result.md (inverter vs ciphertext vs mean image) and reconstructions.png.",
    )
    _data_options(li, split=False, subset=False)
    li.add_argument("--scheme", default="block", choices=["block", "vit"], help="key scheme (default: block)")
    li.add_argument("--block-size", type=positive_int, default=4, help="block size M (default: 4)")
    li.add_argument(
        "--ea", default=None, choices=["permutation", "signed-permutation", "orthogonal"], help="kind of Ea for the vit scheme (default: permutation)"
    )
    li.add_argument("--attacker-images", type=positive_int, default=None, help="first N train images the attacker owns (default: all)")
    li.add_argument("--max-images", type=positive_int, default=None, help="first N test images of the victim (default: all)")
    li.add_argument("--epochs", type=positive_int, default=20, help="U-Net training epochs (default: 20)")
    li.add_argument("--batch-size", type=positive_int, default=64, help="U-Net batch size (default: 64)")
    li.add_argument("--base-width", type=positive_int, default=32, help="U-Net base width (default: 32)")
    li.add_argument("--fresh-key", default="image", choices=["image", "batch"], help="the attacker draws a fresh key per image (default) or per batch")
    li.add_argument("--seed", type=seed, default=0, help="seed of the attacker's keys and U-Net (default: 0); the victim's key is never seeded")
    add_device(li)
    add_output(li, help="output directory (result.json, result.md, reconstructions.png)")
    li.set_defaults(func=_learned_inversion)
