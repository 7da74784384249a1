"""Errors of ``veilnet key ...``: key files that are missing, corrupt or not key files, bad sizes, outputs."""

NEW = ["key", "new", "--scheme", "block", "--channels", "3", "--image-size", "32"]

ROWS = [
    ("info-missing", ["key", "info", "{tmp}/missing.json"], "does not exist"),
    ("info-corrupt-json", ["key", "info", "{corrupt_json}"], "not valid JSON"),
    ("info-a-model-card", ["key", "info", "{model}.json"], "not a veilnet key file"),
    ("info-a-folder", ["key", "info", "{tmp}"], "cannot be read"),
    ("info-weights-file", ["key", "info", "{corrupt_weights}"], "not valid JSON"),
    ("new-block-size-zero", [*NEW, "--block-size", "0", "-o", "{tmp}/k.json"], "positive integer"),
    ("new-block-size-negative", [*NEW, "--block-size", "-4", "-o", "{tmp}/k.json"], "positive integer"),
    ("new-block-size-float", [*NEW, "--block-size", "4.5", "-o", "{tmp}/k.json"], "positive integer"),
    ("new-not-divisible", [*NEW, "--block-size", "5", "-o", "{tmp}/k.json"], "not divisible"),
    ("new-block-with-ea", [*NEW, "--block-size", "4", "--ea", "orthogonal", "-o", "{tmp}/k.json"], "block scheme's Ea"),
    (
        "new-unknown-scheme",
        ["key", "new", "--scheme", "rot13", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "{tmp}/k.json"],
        "invalid choice",
    ),
    ("new-exists", [*NEW, "--block-size", "4", "-o", "{key}"], "exists; pass --force"),
    ("new-output-under-file", [*NEW, "--block-size", "4", "-o", "{afile}/k.json"], "is a file"),
    # a device with --force is tested in tests/test_atomic_writes.py on a node of its own, never /dev's
    ("new-onto-device", [*NEW, "--block-size", "4", "-o", "/dev/null"], "/dev/null: it is a device, not a regular file"),
    ("new-force-onto-folder", [*NEW, "--block-size", "4", "-o", "{tmp}", "--force"], "it is a folder, not a regular file"),
]

# Issue 23: sizes checked before allocation; seeds.
ROWS += [
    ("new-image-size-huge", [*NEW, "--block-size", "4", "--image-size", "1000000", "-o", "{tmp}/k.json"], "image size"),
    ("new-block-size-huge", [*NEW, "--block-size", "4096", "--image-size", "4096", "-o", "{tmp}/k.json"], "block"),
    ("new-channels-huge", [*NEW, "--block-size", "4", "--channels", "1000000", "-o", "{tmp}/k.json"], "channels"),
    ("new-seed-too-large", [*NEW, "--block-size", "4", "--seed", "9223372036854775808", "-o", "{tmp}/k.json"], "seed"),
]
