"""Rows for ``veilnet train`` and ``veilnet eval``: model arguments that build no model, models
that do not take the data, configs, resume, devices and output paths (checked before any work)."""

_TRAIN = ["train", "--data", "digits", "--subset", "2", "--epochs", "1"]

ROWS = [
    # Model arguments that cannot build a model, named.
    ("train-arg-patch-size-0", [*_TRAIN, "--model", "convmixer", "--arg", "patch_size=0", "-o", "{tmp}/t"], "patch_size must be a positive integer"),
    ("train-arg-negative-dim", [*_TRAIN, "--model", "convmixer", "--arg", "dim=-8", "-o", "{tmp}/t"], "dim must be a positive integer"),
    ("train-arg-kernel-size-0", [*_TRAIN, "--model", "convmixer", "--arg", "kernel_size=0", "-o", "{tmp}/t"], "kernel_size must be a positive integer"),
    ("train-arg-float-depth", [*_TRAIN, "--model", "convmixer", "--arg", "depth=2.5", "-o", "{tmp}/t"], "depth must be a positive integer"),
    ("train-arg-vit-heads-0", [*_TRAIN, "--model", "vit", "--arg", "heads=0", "-o", "{tmp}/t"], "heads must be a positive integer"),
    ("train-arg-vit-dim-heads", [*_TRAIN, "--model", "vit", "--arg", "dim=10", "--arg", "heads=3", "-o", "{tmp}/t"], "multiple of heads"),
    ("train-arg-dropout", [*_TRAIN, "--model", "vit", "--arg", "dropout=1.5", "-o", "{tmp}/t"], "dropout must be in [0, 1)"),
    ("train-arg-unknown", [*_TRAIN, "--model", "lenet", "--arg", "bogus=1", "-o", "{tmp}/t"], "does not take bogus"),
    ("train-arg-not-key-value", [*_TRAIN, "--model", "lenet", "--arg", "depth", "-o", "{tmp}/t"], "expected key=value"),
    ("train-unknown-model", [*_TRAIN, "--model", "resnet18", "-o", "{tmp}/t"], "unknown model 'resnet18'"),
    ("train-no-model", ["train", "-o", "{tmp}/t"], "no model given"),
    # A model that does not take the data: checked before training, both shapes named.
    (
        "train-vit-image-size",
        [*_TRAIN, "--model", "vit", "--arg", "image_size=16", "--arg", "dim=8", "--arg", "heads=2", "-o", "{tmp}/t"],
        "takes 3×16×16 images (C×H×W), but digits has 3×32×32",
    ),
    (
        "train-convmixer-patch-size",
        [*_TRAIN, "--model", "convmixer", "--arg", "dim=8", "--arg", "depth=1", "--arg", "patch_size=5", "-o", "{tmp}/t"],
        "3×32×32",
    ),
    (
        "train-init-other-channels",
        [*_TRAIN, "--data", "digits:channels=1", "--model", "convmixer", "--init", "{model}", "-o", "{tmp}/t"],
        "but digits:channels=1 has 1×32×32",
    ),
    ("train-init-other-arguments", [*_TRAIN, "--model", "convmixer", "--init", "{model}", "-o", "{tmp}/t"], "but this run builds convmixer("),
    ("train-init-corrupt", [*_TRAIN, "--model", "convmixer", "--init", "{corrupt_json}", "-o", "{tmp}/t"], "corrupt model card"),
    # Training options and the YAML file.
    ("train-epochs-0", [*_TRAIN, "--model", "lenet", "--epochs", "0", "-o", "{tmp}/t"], "must be positive"),
    ("train-lr-nan", [*_TRAIN, "--model", "lenet", "--lr", "nan", "-o", "{tmp}/t"], "--lr: expected a finite number"),
    ("train-subset-0", [*_TRAIN, "--model", "lenet", "--subset", "0", "-o", "{tmp}/t"], "positive integer"),
    ("train-compile-with-a-value", [*_TRAIN, "--model", "lenet", "--compile=yes", "-o", "{tmp}/t"], "ignored explicit argument 'yes'"),
    ("train-config-missing", ["train", "--config", "{tmp}/none.yaml", "-o", "{tmp}/t"], "does not exist"),
    ("train-config-not-yaml", ["train", "--config", "{corrupt_json}", "-o", "{tmp}/t"], "not valid YAML"),
    ("train-config-not-mapping", ["train", "--config", "{afile}", "-o", "{tmp}/t"], "must be a mapping"),
    ("train-unknown-data", ["train", "--model", "lenet", "--data", "mnist", "-o", "{tmp}/t"], "unknown data set"),
    # Resume, devices, output paths.
    ("train-resume-nothing", [*_TRAIN, "--model", "lenet", "--resume", "-o", "{tmp}/empty"], "nothing to resume"),
    ("train-exists", [*_TRAIN, "--model", "lenet", "-o", "{root}"], "already holds a training run"),
    ("train-output-under-file", [*_TRAIN, "--model", "lenet", "-o", "{afile}/t"], "is a file"),
    ("train-device-cuda", [*_TRAIN, "--model", "lenet", "--device", "cuda", "-o", "{tmp}/t"], "no CUDA GPU"),
    ("train-device-unknown", [*_TRAIN, "--model", "lenet", "--device", "tpu9", "-o", "{tmp}/t"], "device"),
    # eval: the model must take the data; files that are not models.
    ("eval-other-channels", ["eval", "{model}", "--data", "digits:channels=1"], "but digits:channels=1 has 1×32×32"),
    ("eval-other-size", ["eval", "{model}", "--data", "digits:size=30"], "3×30×30"),
    ("eval-missing-model", ["eval", "{tmp}/nowhere", "--data", "digits"], "model card missing"),
    ("eval-output-is-file", ["eval", "{model}", "--data", "digits", "-o", "{afile}"], "is a file, not a folder"),
    ("eval-compile-with-a-value", ["eval", "{model}", "--data", "digits", "--no-compile=1"], "ignored explicit argument '1'"),
    ("eval-corrupt-card", ["eval", "{corrupt_json}", "--data", "digits"], "corrupt model card"),
    ("eval-unknown-data", ["eval", "{model}", "--data", "mnist"], "unknown data set"),
    ("eval-output-under-file", ["eval", "{model}", "--data", "digits", "-o", "{afile}/e"], "is a file"),
    # eval: --data defaults to the data the model's card records; another data set is refused naming both.
    ("eval-other-data-than-the-card", ["eval", "{cifar_model}", "--data", "digits"], "trained on 'folder:cifar10-jpeg.zip', not --data 'digits'"),
    ("eval-data-defaults-to-the-card", ["eval", "{cifar_model}"], "cifar10-jpeg.zip"),
    ("eval-no-data-anywhere", ["eval", "{model}"], "card records no data set: pass --data"),
]

# Issue 23: results that mean nothing, tracebacks, seeds and numbers no run can mean.
ROWS += [
    ("eval-keyed-model", ["eval", "{keyed}", "--data", "digits"], "veilnet keyed evaluate"),
    ("eval-digits-size-huge", ["eval", "{model}", "--data", "digits:size=1000000"], "size"),
    ("train-subset-huge", [*_TRAIN, "--model", "lenet", "--subset", "1000000", "-o", "{tmp}/t"], "1000000"),
    ("train-seed-too-large", [*_TRAIN, "--model", "lenet", "--seed", "9223372036854775808", "-o", "{tmp}/t"], "seed"),
    ("train-seed-negative", [*_TRAIN, "--model", "lenet", "--seed", "-1", "-o", "{tmp}/t"], "seed"),
    ("train-weight-decay-nan", [*_TRAIN, "--model", "lenet", "--weight-decay", "nan", "-o", "{tmp}/t"], "finite number"),
    ("train-warmup-inf", [*_TRAIN, "--model", "lenet", "--warmup", "inf", "-o", "{tmp}/t"], "finite number"),
    ("train-label-smoothing-nan", [*_TRAIN, "--model", "lenet", "--label-smoothing", "nan", "-o", "{tmp}/t"], "finite number"),
]
