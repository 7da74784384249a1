"""``veilnet data`` and ``veilnet demo``."""

ROWS = [
    ("info-unknown-spec", ["data", "info", "nosuch:x"], "unknown data set"),
    ("info-missing-folder", ["data", "info", "folder:{tmp}/nonexistent"], "does not exist"),
    ("info-folder-is-a-file", ["data", "info", "folder:{afile}"], "not a zip archive"),
    ("info-missing-cifar", ["data", "info", "cifar10:{tmp}/nothing"], "cifar"),
    ("demo-output-under-file", ["demo", "-o", "{afile}/demo"], "is a file"),
    ("demo-bad-seed", ["demo", "--seed", "x"], "invalid int value"),
]
