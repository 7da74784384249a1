"""Errors common to every command: options, devices, output paths."""

ROWS = [
    ("unknown-command", ["frobnicate"], "invalid choice"),
    ("train-unknown-option", ["train", "--model", "lenet", "--data", "digits", "-o", "{tmp}/t", "--no-such-option"], "unrecognized arguments"),
    ("eval-device-cuda", ["eval", "{model}", "--data", "digits", "--device", "cuda", "-o", "{tmp}/e"], "no CUDA GPU"),
    ("eval-device-unknown", ["eval", "{model}", "--data", "digits", "--device", "tpu9", "-o", "{tmp}/e"], "device"),
    (
        "key-new-output-under-file",
        ["key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "{afile}/k.json"],
        "is a file",
    ),
]
