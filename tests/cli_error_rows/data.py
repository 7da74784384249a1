"""``veilnet data`` and ``veilnet demo``."""

ROWS = [
    ("info-unknown-spec", ["data", "info", "nosuch:x"], "unknown data set"),
    ("info-missing-folder", ["data", "info", "folder:{tmp}/nonexistent"], "does not exist"),
    ("info-folder-is-a-file", ["data", "info", "folder:{afile}"], "not a zip archive"),
    ("info-missing-cifar", ["data", "info", "cifar10:{tmp}/nothing"], "cifar"),
    # Issue 29: a missing data set says where it was looked for (VEILNET_DATA) and how to get it.
    ("info-missing-cifar-download", ["data", "info", "cifar10:{tmp}/nothing"], "`veilnet data info cifar10:PATH --download`"),
    ("info-missing-cifar-absolute", ["data", "info", "cifar10:{tmp}/nothing"], "VEILNET_DATA applies only to relative ones"),
    ("info-missing-cifar-relative", ["data", "info", "cifar10:nothing"], "relative paths are read"),
    ("info-missing-cifar-relative-names-root", ["data", "info", "cifar10:nothing"], "VEILNET_DATA"),
    ("info-empty-cifar-folder", ["data", "info", "cifar100:{tmp}"], "holds neither cifar-100-python/ nor cifar-100-python.tar.gz"),
    ("info-empty-cifar-folder-download", ["data", "info", "cifar100:{tmp}"], "cifar100:PATH --download"),
    ("info-missing-folder-relative", ["data", "info", "folder:nonexistent"], "relative paths are read"),
    ("info-missing-folder-relative-names-root", ["data", "info", "folder:nonexistent"], "VEILNET_DATA"),
    ("info-missing-jpeg-cifar", ["data", "info", "folder:cifar10-jpeg.zip"], "README, 'Data and checkpoints'"),
    ("info-missing-jpeg-cifar-original", ["data", "info", "folder:cifar10-jpeg.zip"], "cifar10:PATH --download"),
    ("demo-output-under-file", ["demo", "-o", "{afile}/demo"], "is a file"),
    ("demo-bad-seed", ["demo", "--seed", "x"], "expected a seed"),
]

# Issue 23: sizes checked before allocation; seeds.
ROWS += [
    ("info-digits-size-huge", ["data", "info", "digits:size=1000000"], "size"),
    ("demo-seed-too-large", ["demo", "--seed", "9223372036854775808", "-o", "{tmp}/d"], "seed"),
]
