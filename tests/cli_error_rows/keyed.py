"""Errors of ``veilnet keyed ...``: keys and models that do not fit, plain where transformed is
needed (and back), counts that are not positive, inputs that are not images, outputs."""

KEY = ["--key", "{key}"]

ROWS = [
    # transform-model
    ("transform-model-corrupt-key", ["keyed", "transform-model", "{model}", "--key", "{corrupt_json}", "-o", "{tmp}/m"], "not valid JSON"),
    ("transform-model-key-is-a-card", ["keyed", "transform-model", "{model}", "--key", "{model}.json", "-o", "{tmp}/m"], "not a veilnet key file"),
    ("transform-model-already-transformed", ["keyed", "transform-model", "{keyed}", *KEY, "-o", "{tmp}/m"], "already transformed"),
    ("transform-model-corrupt-weights", ["keyed", "transform-model", "{corrupt_weights}", *KEY, "-o", "{tmp}/m"], "corrupt"),
    ("transform-model-missing-model", ["keyed", "transform-model", "{tmp}/none", *KEY, "-o", "{tmp}/m"], "missing"),
    ("transform-model-output-exists", ["keyed", "transform-model", "{model}", *KEY, "-o", "{model}"], "exists; pass --force"),
    ("transform-model-output-dir-holds-a-model", ["keyed", "transform-model", "{model}", *KEY, "-o", "{root}"], "exists; pass --force"),
    ("transform-model-output-under-file", ["keyed", "transform-model", "{model}", *KEY, "-o", "{afile}/m"], "is a file"),
    # rekey
    ("rekey-plain-model", ["keyed", "rekey", "{model}", "--old-key", "{key}", "--new-key", "{key}", "-o", "{tmp}/r"], "plain model"),
    ("rekey-corrupt-new-key", ["keyed", "rekey", "{keyed}", "--old-key", "{key}", "--new-key", "{corrupt_json}", "-o", "{tmp}/r"], "not valid JSON"),
    ("rekey-output-exists", ["keyed", "rekey", "{keyed}", "--old-key", "{key}", "--new-key", "{key}", "-o", "{keyed}"], "exists; pass --force"),
    ("rekey-output-dir-holds-a-model", ["keyed", "rekey", "{keyed}", "--old-key", "{key}", "--new-key", "{key}", "-o", "{root}"], "exists; pass --force"),
    ("rekey-output-under-file", ["keyed", "rekey", "{keyed}", "--old-key", "{key}", "--new-key", "{key}", "-o", "{afile}/r"], "is a file"),
    # transform-images
    ("transform-images-limit-zero", ["keyed", "transform-images", "digits", *KEY, "--limit", "0", "-o", "{tmp}/e"], "positive integer"),
    ("transform-images-limit-negative", ["keyed", "transform-images", "digits", *KEY, "--limit", "-3", "-o", "{tmp}/e"], "positive integer"),
    ("transform-images-n-per-class-zero", ["keyed", "transform-images", "digits", *KEY, "--n-per-class", "0", "-o", "{tmp}/e"], "positive integer"),
    ("transform-images-missing-file", ["keyed", "transform-images", "{tmp}/none.png", *KEY, "-o", "{tmp}/e"], "no such image file"),
    ("transform-images-not-an-image", ["keyed", "transform-images", "{corrupt_weights}", "{corrupt_weights}", *KEY, "-o", "{tmp}/e"], "not a readable image"),
    ("transform-images-unknown-spec", ["keyed", "transform-images", "nosuchdata", *KEY, "-o", "{tmp}/e"], "nosuchdata"),
    (
        "transform-images-labels-inside-output",
        ["keyed", "transform-images", "digits", *KEY, "--limit", "2", "--labels", "{tmp}/e/labels.json", "-o", "{tmp}/e"],
        "inside the output folder",
    ),
    (
        "transform-images-labels-for-files",
        ["keyed", "transform-images", "{tmp}/a.png", "{tmp}/b.png", *KEY, "--labels", "{tmp}/l.json", "-o", "{tmp}/e"],
        "--labels takes",
    ),
    ("transform-images-output-under-file", ["keyed", "transform-images", "digits", *KEY, "--limit", "2", "-o", "{afile}/e"], "is a file"),
    # evaluate
    ("evaluate-transformed-model", ["keyed", "evaluate", "{keyed}", *KEY, "--data", "digits", "-o", "{tmp}/ev"], "PLAIN model"),
    ("evaluate-random-keys-zero", ["keyed", "evaluate", "{model}", *KEY, "--data", "digits", "--random-keys", "0", "-o", "{tmp}/ev"], "positive integer"),
    ("evaluate-n-per-class-negative", ["keyed", "evaluate", "{model}", *KEY, "--data", "digits", "--n-per-class", "-1", "-o", "{tmp}/ev"], "positive integer"),
    ("evaluate-device-cuda", ["keyed", "evaluate", "{model}", *KEY, "--data", "digits", "--device", "cuda:7", "-o", "{tmp}/ev"], "cuda"),
    ("evaluate-corrupt-key", ["keyed", "evaluate", "{model}", "--key", "{corrupt_json}", "--data", "digits", "-o", "{tmp}/ev"], "not valid JSON"),
    ("evaluate-output-under-file", ["keyed", "evaluate", "{model}", *KEY, "--data", "digits", "-o", "{afile}/ev"], "is a file"),
    # attacks
    (
        "attack-known-plaintext-holdout-zero",
        ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "--holdout", "0", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    (
        "attack-known-plaintext-holdout-negative",
        ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "--holdout", "-2", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    (
        "attack-known-plaintext-pairs-zero",
        ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "--pairs", "0", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    ("attack-known-plaintext-output-exists", ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "-o", "{afile}"], "exists; pass --force"),
    (
        "attack-known-plaintext-force-onto-folder",
        ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "-o", "{tmp}", "--force"],
        "it is a folder, not a regular file",
    ),
    (
        "attack-known-plaintext-onto-device",
        ["keyed", "attack", "known-plaintext", *KEY, "--data", "digits", "-o", "/dev/null"],
        "it is a device",
    ),
    (
        "attack-ciphertext-only-encrypted-zero",
        ["keyed", "attack", "ciphertext-only", *KEY, "--data", "digits", "--encrypted", "0", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    (
        "attack-ciphertext-only-reference-negative",
        ["keyed", "attack", "ciphertext-only", *KEY, "--data", "digits", "--reference", "-5", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    (
        "attack-weight-matching-plain-as-transformed",
        ["keyed", "attack", "weight-matching", "{model}", "--plain", "{model}", *KEY, "-o", "{tmp}/a.json"],
        "not a transformed model",
    ),
    (
        "attack-weight-matching-corrupt-plain",
        ["keyed", "attack", "weight-matching", "{keyed}", "--plain", "{corrupt_weights}", *KEY, "-o", "{tmp}/a.json"],
        "corrupt",
    ),
    ("attack-random-keys-plain-model", ["keyed", "attack", "random-keys", "{model}", "--data", "digits", "-o", "{tmp}/a.json"], "not a transformed model"),
    ("attack-random-keys-card-without-parameters", ["keyed", "attack", "random-keys", "{keyed_bare}", "--data", "digits", "-o", "{tmp}/a.json"], "extra.keyed"),
    (
        "attack-random-keys-zero",
        ["keyed", "attack", "random-keys", "{keyed}", "--data", "digits", "--random-keys", "0", "-o", "{tmp}/a.json"],
        "positive integer",
    ),
    (
        "attack-random-keys-device-unknown",
        ["keyed", "attack", "random-keys", "{keyed}", "--data", "digits", "--device", "tpu9", "-o", "{tmp}/a.json"],
        "device",
    ),
    # attack learned-inversion
    (
        "attack-learned-inversion-bad-scheme",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--scheme", "blocks", "-o", "{tmp}/li"],
        "invalid choice",
    ),
    (
        "attack-learned-inversion-block-size-not-dividing",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--block-size", "5", "-o", "{tmp}/li"],
        "not divisible by block size 5",
    ),
    (
        "attack-learned-inversion-ea-for-block",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--ea", "orthogonal", "-o", "{tmp}/li"],
        "vit scheme",
    ),
    (
        "attack-learned-inversion-epochs-zero",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--epochs", "0", "-o", "{tmp}/li"],
        "positive integer",
    ),
    (
        "attack-learned-inversion-epochs-not-a-number",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--epochs", "many", "-o", "{tmp}/li"],
        "positive integer",
    ),
    (
        "attack-learned-inversion-attacker-images-zero",
        ["keyed", "attack", "learned-inversion", "--data", "digits", "--attacker-images", "0", "-o", "{tmp}/li"],
        "positive integer",
    ),
    ("attack-learned-inversion-seed-negative", ["keyed", "attack", "learned-inversion", "--data", "digits", "--seed", "-1", "-o", "{tmp}/li"], "non-negative"),
    ("attack-learned-inversion-device-unknown", ["keyed", "attack", "learned-inversion", "--data", "digits", "--device", "tpu9", "-o", "{tmp}/li"], "device"),
    ("attack-learned-inversion-missing-data", ["keyed", "attack", "learned-inversion", "--data", "folder:{tmp}/none.zip", "-o", "{tmp}/li"], "does not exist"),
    ("attack-learned-inversion-unknown-data", ["keyed", "attack", "learned-inversion", "--data", "nosuchdata", "-o", "{tmp}/li"], "nosuchdata"),
    ("attack-learned-inversion-output-is-a-file", ["keyed", "attack", "learned-inversion", "--data", "digits", "-o", "{afile}"], "is a file"),
    ("attack-learned-inversion-output-under-file", ["keyed", "attack", "learned-inversion", "--data", "digits", "-o", "{afile}/li"], "is a file"),
]

# Issue 23: the transformed model given as the plain one; seeds.
ROWS += [
    (
        "attack-weight-matching-plain-is-transformed",
        ["keyed", "attack", "weight-matching", "{keyed}", "--plain", "{keyed}", *KEY, "-o", "{tmp}/a.json"],
        "--plain",
    ),
    ("evaluate-seed-too-large", ["keyed", "evaluate", "{model}", *KEY, "--data", "digits", "--seed", "9223372036854775808", "-o", "{tmp}/ev"], "seed"),
    ("transform-images-seed-too-large", ["keyed", "transform-images", "digits", *KEY, "--seed", "9223372036854775808", "-o", "{tmp}/e"], "seed"),
    ("transform-images-n-per-class-huge", ["keyed", "transform-images", "digits", *KEY, "--n-per-class", "1000000", "-o", "{tmp}/e"], "1000000"),
    (
        "attack-ciphertext-only-seed-too-large",
        ["keyed", "attack", "ciphertext-only", *KEY, "--data", "digits", "--seed", "9223372036854775808", "-o", "{tmp}/a.json"],
        "seed",
    ),
]
