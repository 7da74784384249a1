"""Rows for ``veilnet models``: cards and checkpoints that are not models, outputs checked first."""

ROWS = [
    ("info-missing", ["models", "info", "{tmp}/nowhere"], "model card missing"),
    ("info-corrupt-card", ["models", "info", "{corrupt_json}"], "corrupt model card"),
    ("import-missing", ["models", "import-cifar-resnet", "{tmp}/none.th", "-o", "{tmp}/r"], "checkpoint file missing"),
    ("import-not-a-checkpoint", ["models", "import-cifar-resnet", "{afile}", "-o", "{tmp}/r"], "not a safe torch checkpoint"),
    ("import-garbage", ["models", "import-cifar-resnet", "{corrupt_weights}", "-o", "{tmp}/r"], "not a safe torch checkpoint"),
    ("import-not-a-resnet", ["models", "import-cifar-resnet", "{model}.safetensors", "-o", "{tmp}/r"], "not a CIFAR ResNet checkpoint"),
    ("import-output-under-file", ["models", "import-cifar-resnet", "{afile}", "-o", "{afile}/r"], "is a file"),
    ("import-output-exists", ["models", "import-cifar-resnet", "{afile}", "-o", "{model}"], "exists; pass --force"),
]
