"""``veilnet key``: make (``key new``, schemes of :mod:`veilnet.keyed`) and inspect key files.

Neither command prints key material: ``info`` shows the scheme, the public parameters, the
entropy drawn and the fingerprint of a key file that passed every check of :func:`veilnet.keys.load`.
"""

from __future__ import annotations

import argparse

from veilnet.cli import add_group, add_output, add_seed, positive_int


def _info(args: argparse.Namespace) -> int:
    from veilnet import keys

    key = keys.load(args.key)
    print(f"scheme:       {key.scheme}")
    for name, value in sorted(key.params.items()):
        print(f"{name + ':':<14}{value}")
    print(f"entropy bits: {key.entropy_bits:.1f}{' (reproducible: seeded)' if key.reproducible else ''}")
    print(f"fingerprint:  {key.fingerprint}")
    return 0


def _new(args: argparse.Namespace) -> int:
    import math

    from veilnet.keyed import generate_key, key_space_bits
    from veilnet.paths import prepare_output

    prepare_output(args.output, force=args.force)
    key = generate_key(args.scheme, args.block_size, args.channels, args.image_size, ea=args.ea, seed=args.seed)
    path = key.save(args.output, force=args.force)
    print(f"{key.scheme} key -> {path} (mode 0600)")
    space = key_space_bits(key)
    print(
        f"key space:    {f'{space:.1f} bits' if math.isfinite(space) else 'unbounded (continuous Ea)'}; "
        f"entropy drawn: {key.entropy_bits:.1f} bits{' (reproducible: seeded)' if key.reproducible else ''}"
    )
    print(f"fingerprint:  {key.fingerprint}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    key_sub = add_group(sub, "key")
    info = key_sub.add_parser("info", help="check a key file and show its scheme, parameters and fingerprint (never its material)")
    info.add_argument("key", help="key file")
    info.set_defaults(func=_info)

    new = key_sub.add_parser("new", help="generate a key for veilnet.keyed (block-wise or ViT scheme) from the OS CSPRNG")
    new.add_argument("--scheme", required=True, choices=["block", "vit"], help="block: shuffle + flip (ConvMixer); vit: Ea and block permutation Eb")
    new.add_argument("--block-size", type=positive_int, required=True, help="block size M (= the model's patch size)")
    new.add_argument("--channels", type=positive_int, required=True, help="image channels C")
    new.add_argument("--image-size", type=positive_int, required=True, help="image size S (images are S×S, S divisible by M)")
    new.add_argument(
        "--ea",
        default=None,
        choices=["permutation", "signed-permutation", "orthogonal"],
        help="kind of Ea for the vit scheme (default: permutation); the block scheme's Ea is always a signed permutation",
    )
    add_seed(new)
    add_output(new, help="key file to write (mode 0600)")
    new.set_defaults(func=_new)
