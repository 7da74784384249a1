"""``veilnet key``: inspect key files (``key new`` is added by the schemes in veilnet.keyed)."""

from __future__ import annotations

import argparse

from veilnet import keys


def _info(args: argparse.Namespace) -> int:
    key = keys.load(args.key)
    print(f"scheme:       {key.scheme}")
    for name, value in sorted(key.params.items()):
        print(f"{name + ':':<14}{value}")
    print(f"entropy bits: {key.entropy_bits:.1f}{' (reproducible: seeded)' if key.reproducible else ''}")
    print(f"fingerprint:  {key.fingerprint}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    key = sub.add_parser("key", help="secret keys")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="KEY_COMMAND", parser_class=type(key))
    info = key_sub.add_parser("info", help="show a key file's scheme, parameters and fingerprint (never its material)")
    info.add_argument("key", help="key file")
    info.set_defaults(func=_info)
