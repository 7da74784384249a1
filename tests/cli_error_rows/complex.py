"""Rows for ``veilnet complex train``, ``veilnet complex evaluate`` and ``veilnet complex attack``: models that are not
complex-valued, arguments that build no model, adversarial options out of range, config files,
resume, devices, output paths and files that are not models (all checked before any training).
Resuming with another configuration needs a run first: tests/test_complex_training.py."""

_TRAIN = ["complex", "train", "--data", "digits", "--subset", "2", "--epochs", "1"]
_LENET = [*_TRAIN, "--model", "complex-lenet"]

ROWS = [
    # Which model: unknown, real (a baseline or a zoo model), none.
    ("train-unknown-model", [*_TRAIN, "--model", "complex-lenet5", "-o", "{tmp}/t"], "unknown model 'complex-lenet5'"),
    ("train-real-baseline", [*_TRAIN, "--model", "split-lenet", "-o", "{tmp}/t"], "split-lenet is a real network"),
    ("train-real-zoo-model", [*_TRAIN, "--model", "resnet20", "-o", "{tmp}/t"], "resnet20 is a real network"),
    ("train-no-model", ["complex", "train", "-o", "{tmp}/t"], "no model given"),
    # Model arguments.
    ("train-arg-unknown", [*_LENET, "--arg", "noise=0.5", "-o", "{tmp}/t"], "does not take noise"),
    ("train-arg-not-key-value", [*_LENET, "--arg", "width", "-o", "{tmp}/t"], "expected key=value"),
    ("train-arg-bad-c", [*_LENET, "--arg", "c=-1", "-o", "{tmp}/t"], "c must be a positive number"),
    ("train-arg-resnet-variant", [*_TRAIN, "--model", "complex-resnet20-alpha", "--arg", "variant=gamma", "-o", "{tmp}/t"], "does not take variant"),
    ("train-other-image-size", [*_LENET, "--data", "digits:size=12", "-o", "{tmp}/t"], "takes 3×32×32 images (C×H×W), but digits:size=12 has 3×12×12"),
    ("train-arg-image-size-too-small", [*_LENET, "--arg", "image_size=12", "-o", "{tmp}/t"], "LeNet needs image_size >= 16"),
    # Training options, the adversarial ones included.
    ("train-k-1", [*_LENET, "--k", "1", "-o", "{tmp}/t"], "k must be at least 2"),
    ("train-negative-lambda", [*_LENET, "--adversarial-weight", "-1", "-o", "{tmp}/t"], "adversarial_weight must be >= 0"),
    ("train-d-lr-nan", [*_LENET, "--d-lr", "nan", "-o", "{tmp}/t"], "--d-lr: expected a finite number"),
    ("train-gp-weight-0", [*_LENET, "--gp-weight", "0", "-o", "{tmp}/t"], "gp_weight > 0"),
    ("train-n-critic-0", [*_LENET, "--n-critic", "0", "-o", "{tmp}/t"], "n_critic and d_channels must be positive"),
    ("train-k-not-int", [*_LENET, "--k", "eight", "-o", "{tmp}/t"], "invalid int value"),
    ("train-epochs-0", [*_LENET, "--epochs", "0", "-o", "{tmp}/t"], "must be positive"),
    ("train-lr-nan", [*_LENET, "--lr", "nan", "-o", "{tmp}/t"], "--lr: expected a finite number"),
    ("train-subset-0", [*_LENET, "--subset", "0", "-o", "{tmp}/t"], "positive integer"),
    ("train-config-missing", ["complex", "train", "--config", "{tmp}/none.yaml", "-o", "{tmp}/t"], "does not exist"),
    ("train-config-not-yaml", ["complex", "train", "--config", "{corrupt_json}", "-o", "{tmp}/t"], "not valid YAML"),
    ("train-config-not-mapping", ["complex", "train", "--config", "{afile}", "-o", "{tmp}/t"], "must be a mapping"),
    ("train-unknown-data", [*_LENET[:2], "--model", "complex-lenet", "--data", "mnist", "-o", "{tmp}/t"], "unknown data set"),
    # --init: not a model, or a real model of another architecture.
    ("train-init-corrupt", [*_LENET, "--init", "{corrupt_json}", "-o", "{tmp}/t"], "corrupt model card"),
    ("train-init-other-architecture", [*_LENET, "--init", "{model}", "-o", "{tmp}/t"], "not the same architecture"),
    # Resume, devices, output paths.
    ("train-resume-nothing", [*_LENET, "--resume", "-o", "{tmp}/empty"], "nothing to resume"),
    ("train-exists", [*_LENET, "-o", "{root}"], "already holds a training run"),
    ("train-output-under-file", [*_LENET, "-o", "{afile}/t"], "is a file"),
    ("train-device-cuda", [*_LENET, "--device", "cuda", "-o", "{tmp}/t"], "no CUDA GPU"),
    ("train-device-unknown", [*_LENET, "--device", "tpu9", "-o", "{tmp}/t"], "device"),
    # evaluate: a real model, files that are not models, outputs, devices.
    ("evaluate-real-model", ["complex", "evaluate", "{model}", "--data", "digits"], "is a real network"),
    ("evaluate-missing-model", ["complex", "evaluate", "{tmp}/nowhere", "--data", "digits"], "model card missing"),
    ("evaluate-corrupt-card", ["complex", "evaluate", "{corrupt_json}", "--data", "digits"], "corrupt model card"),
    ("evaluate-corrupt-weights", ["complex", "evaluate", "{corrupt_weights}", "--data", "digits"], "corrupt model card"),
    ("evaluate-output-under-file", ["complex", "evaluate", "{model}", "--data", "digits", "-o", "{afile}/r.json"], "is a file"),
    ("evaluate-output-exists", ["complex", "evaluate", "{model}", "--data", "digits", "-o", "{afile}"], "exists; pass --force"),
    ("evaluate-device-cuda", ["complex", "evaluate", "{model}", "--data", "digits", "--device", "cuda"], "no CUDA GPU"),
    ("evaluate-batch-size-0", ["complex", "evaluate", "{model}", "--data", "digits", "--batch-size", "0"], "positive integer"),
    ("evaluate-no-data", ["complex", "evaluate", "{model}"], "--data"),
    # attack: the model, the baselines, the data, the settings (all before any training), outputs.
    ("attack-real-model", ["complex", "attack", "{model}", "--data", "digits", "-o", "{tmp}/a"], "is a real network"),
    ("attack-missing-model", ["complex", "attack", "{tmp}/nowhere", "--data", "digits", "-o", "{tmp}/a"], "model card missing"),
    ("attack-corrupt-model", ["complex", "attack", "{corrupt_json}", "--data", "digits", "-o", "{tmp}/a"], "corrupt model card"),
    (
        "attack-baseline-not-split",
        ["complex", "attack", "{complex}", "--baseline", "{model}", "--data", "digits", "-o", "{tmp}/a"],
        "is not a real split network",
    ),
    (
        "attack-baseline-complex",
        ["complex", "attack", "{complex}", "--baseline", "{complex}", "--data", "digits", "-o", "{tmp}/a"],
        "is not a real split network",
    ),
    ("attack-other-image-size", ["complex", "attack", "{complex}", "--data", "digits:size=16", "-o", "{tmp}/a"], "takes 3×32×32 images"),
    ("attack-unknown-data", ["complex", "attack", "{complex}", "--data", "mnist", "-o", "{tmp}/a"], "unknown data set"),
    ("attack-no-data", ["complex", "attack", "{complex}", "-o", "{tmp}/a"], "--data"),
    ("attack-unknown-attack", ["complex", "attack", "{complex}", "--data", "digits", "--attacks", "angle,psychic", "-o", "{tmp}/a"], "unknown attack psychic"),
    ("attack-no-attack", ["complex", "attack", "{complex}", "--data", "digits", "--attacks", ",", "-o", "{tmp}/a"], "unknown attack (none given)"),
    ("attack-epochs-0", ["complex", "attack", "{complex}", "--data", "digits", "--epochs", "0", "-o", "{tmp}/a"], "positive integer"),
    ("attack-max-images-1", ["complex", "attack", "{complex}", "--data", "digits", "--max-images", "1", "-o", "{tmp}/a"], "max-images must be an integer >= 2"),
    (
        "attack-negative-seed",
        ["complex", "attack", "{complex}", "--data", "digits", "--seed", "-1", "-o", "{tmp}/a"],
        "expected a seed, a non-negative integer below 2^63",
    ),
    ("attack-output-exists", ["complex", "attack", "{complex}", "--data", "digits", "-o", "{existing_report}"], "exists; pass --force"),
    ("attack-output-under-file", ["complex", "attack", "{complex}", "--data", "digits", "-o", "{afile}/a"], "is a file"),
    ("attack-device-cuda", ["complex", "attack", "{complex}", "--data", "digits", "--device", "cuda", "-o", "{tmp}/a"], "no CUDA GPU"),
]

# Issue 23: non-finite numbers, seeds.
ROWS += [
    ("train-adversarial-weight-inf", [*_LENET, "--adversarial-weight", "inf", "-o", "{tmp}/t"], "finite number"),
    ("train-gp-weight-inf", [*_LENET, "--gp-weight", "inf", "-o", "{tmp}/t"], "finite number"),
    ("train-seed-too-large", [*_LENET, "--seed", "9223372036854775808", "-o", "{tmp}/t"], "seed"),
    ("evaluate-seed-too-large", ["complex", "evaluate", "{complex}", "--data", "digits", "--seed", "9223372036854775808"], "seed"),
    ("attack-seed-too-large", ["complex", "attack", "{complex}", "--data", "digits", "--seed", "9223372036854775808", "-o", "{tmp}/a"], "seed"),
    ("split-seed-too-large", ["split", "{complex}", "--pool-data", "digits", "--seed", "9223372036854775808", "-o", "{tmp}/s"], "seed"),
    ("split-pool-size-huge", ["split", "{complex}", "--pool-data", "digits", "--pool-size", "1000000", "-o", "{tmp}/s"], "1000000"),
]
