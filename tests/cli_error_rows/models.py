"""Rows for ``veilnet models``: cards and checkpoints that are not models, outputs checked first."""

ROWS = [
    ("info-missing", ["models", "info", "{tmp}/nowhere"], "model card missing"),
    ("info-corrupt-card", ["models", "info", "{corrupt_json}"], "corrupt model card"),
    ("import-missing", ["models", "import-cifar-resnet", "{tmp}/none.th", "-o", "{tmp}/r"], "checkpoint file missing"),
    # Issue 29: a missing model says which path was tried and, for a CIFAR ResNet, where such checkpoints come from.
    ("info-missing-relative-says-where", ["models", "info", "nowhere"], "nowhere.json: model card missing (looked for /"),
    ("info-missing-says-what-a-model-is", ["models", "info", "{tmp}/nowhere"], ".json card beside its .safetensors"),
    ("info-missing-resnet-says-where-from", ["models", "info", "{tmp}/resnet20"], "akamaster/pytorch_resnet_cifar10"),
    ("info-unconverted-checkpoint", ["models", "info", "{tmp}/resnet20-12fca82f.th"], "veilnet models import-cifar-resnet FILE.th -o DIR"),
    (
        "import-missing-says-where-from",
        ["models", "import-cifar-resnet", "{tmp}/none.th", "-o", "{tmp}/r"],
        "pretrained_models/ of github.com/akamaster/pytorch_resnet_cifar10",
    ),
    ("import-missing-relative-says-where", ["models", "import-cifar-resnet", "resnet20-12fca82f.th", "-o", "r"], "checkpoint file missing (looked for /"),
    ("import-not-a-checkpoint", ["models", "import-cifar-resnet", "{afile}", "-o", "{tmp}/r"], "not a safe torch checkpoint"),
    ("import-garbage", ["models", "import-cifar-resnet", "{corrupt_weights}", "-o", "{tmp}/r"], "not a safe torch checkpoint"),
    ("import-not-a-resnet", ["models", "import-cifar-resnet", "{model}.safetensors", "-o", "{tmp}/r"], "not a CIFAR ResNet checkpoint"),
    ("import-output-under-file", ["models", "import-cifar-resnet", "{afile}", "-o", "{afile}/r"], "is a file"),
    ("import-output-exists", ["models", "import-cifar-resnet", "{afile}", "-o", "{model}"], "exists; pass --force"),
]
