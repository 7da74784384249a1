"""``veilnet data`` and ``veilnet demo``."""

ROWS = [
    ("info-unknown-spec", ["data", "info", "nosuch:x"], "unknown data set"),
    ("info-missing-folder", ["data", "info", "folder:{tmp}/nonexistent"], "does not exist"),
    ("info-folder-is-a-file", ["data", "info", "folder:{afile}"], "not a zip archive"),
    ("info-missing-cifar", ["data", "info", "cifar10:{tmp}/nothing"], "cifar"),
    ("demo-output-under-file", ["demo", "-o", "{afile}/demo"], "is a file"),
    ("demo-bad-seed", ["demo", "--seed", "x"], "expected a seed"),
]

# Issue 23: sizes checked before allocation; seeds.
ROWS += [
    ("info-digits-size-huge", ["data", "info", "digits:size=1000000"], "size"),
    ("demo-seed-too-large", ["demo", "--seed", "9223372036854775808", "-o", "{tmp}/d"], "seed"),
]
