"""Errors of ``veilnet robust evaluate`` and ``veilnet robust sweep``: every one is caught before
the model is loaded or any attack runs."""

_EVAL = ["robust", "evaluate", "{model}", "--data", "digits", "--n-per-class", "1"]
_SWEEP = ["robust", "sweep", "{model}", "--data", "digits", "--n-per-class", "1"]
_OUT = ["-o", "{tmp}/r"]

ROWS = [
    ("evaluate-eps-not-a-number", [*_EVAL, "--eps", "eight", *_OUT], "fraction like 8/255"),
    ("evaluate-compile-with-a-value", [*_EVAL, "--no-compile=0", *_OUT], "ignored explicit argument '0'"),
    ("evaluate-eps-divide-by-zero", [*_EVAL, "--eps", "8/0", *_OUT], "fraction like 8/255"),
    ("evaluate-eps-negative", [*_EVAL, "--eps=-1/255", *_OUT], "eps must be a finite number >= 0"),
    ("evaluate-directions-zero", [*_EVAL, "--directions", "0", *_OUT], "directions must be an integer >= 1"),
    ("evaluate-radius-zero", [*_EVAL, "--radius", "0", *_OUT], "radius must be a positive number"),
    ("evaluate-draws-zero", [*_EVAL, "--draws", "0", *_OUT], "draws must be an integer >= 1"),
    ("evaluate-space-unknown", [*_EVAL, "--space", "latent", *_OUT], "invalid choice"),
    ("evaluate-n-per-class-zero", [*_EVAL[:-1], "0", *_OUT], "positive integer"),
    ("evaluate-unknown-attack", [*_EVAL, "--attacks", "fgsm,nope", *_OUT], "unknown attack 'nope'"),
    ("evaluate-no-attack", [*_EVAL, "--attacks", ",", *_OUT], "at least one attack"),
    ("evaluate-set-typo", [*_EVAL, "--attacks", "square", "--set", "square.quries=5", *_OUT], "no setting 'quries'"),
    ("evaluate-set-bad-value", [*_EVAL, "--attacks", "square", "--set", "square.queries=0", *_OUT], "queries must be >= 1"),
    ("evaluate-set-bad-type", [*_EVAL, "--attacks", "square", "--set", "square.queries=many", *_OUT], "queries must be an integer"),
    ("evaluate-set-bad-choice", [*_EVAL, "--attacks", "deepfool", "--set", "deepfool.norm=l1", *_OUT], "norm must be one of l2, linf"),
    ("evaluate-set-attack-not-run", [*_EVAL, "--attacks", "fgsm", "--set", "cw.steps=3", *_OUT], "--set expects ATTACK.KEY=VALUE"),
    ("evaluate-set-no-attack-name", [*_EVAL, "--attacks", "square", "--set", "queries=5", *_OUT], "--set expects ATTACK.KEY=VALUE"),
    ("evaluate-set-no-value", [*_EVAL, "--attacks", "square", "--set", "square.queries", *_OUT], "expected key=value"),
    ("evaluate-set-reserved", [*_EVAL, "--attacks", "square", "--set", "square.seed=1", *_OUT], "--seed"),
    ("evaluate-sweep-radii-not-numbers", [*_EVAL, "--attacks", "fgsm", "--sweep-radii", "1,x", *_OUT], "comma-separated numbers"),
    ("evaluate-sweep-radius-negative", [*_EVAL, "--attacks", "fgsm", "--sweep-radii", "1,-2", *_OUT], "radius must be a positive number"),
    ("evaluate-sweep-attack-unknown", [*_EVAL, "--attacks", "fgsm", "--sweep-radii", "1", "--sweep-attack", "nope", *_OUT], "unknown attack 'nope'"),
    ("evaluate-device-cuda", [*_EVAL, "--attacks", "fgsm", "--device", "cuda", *_OUT], "no CUDA GPU"),
    ("evaluate-device-unknown", [*_EVAL, "--attacks", "fgsm", "--device", "tpu9", *_OUT], "device"),
    ("evaluate-output-under-a-file", [*_EVAL, "--attacks", "fgsm", "-o", "{afile}/r"], "is a file"),
    ("evaluate-model-missing", ["robust", "evaluate", "{tmp}/missing.safetensors", "--data", "digits", "--attacks", "fgsm", *_OUT], "missing"),
    ("sweep-nothing-to-sweep", [*_SWEEP, *_OUT], "needs --radii and/or --directions-list"),
    ("sweep-radii-empty", [*_SWEEP, "--radii", ",", *_OUT], "finite numbers"),
    ("sweep-radii-nan", [*_SWEEP, "--radii", "nan", *_OUT], "finite numbers"),
    ("sweep-directions-fractional", [*_SWEEP, "--directions-list", "6,2.5", *_OUT], "whole numbers"),
    ("sweep-directions-zero", [*_SWEEP, "--directions-list", "0,6", *_OUT], "directions must be an integer >= 1"),
    ("sweep-attack-unknown", [*_SWEEP, "--radii", "1", "--sweep-attack", "nope", *_OUT], "unknown attack 'nope'"),
    ("sweep-eps-bad", [*_SWEEP, "--radii", "1", "--eps", "1/x", *_OUT], "fraction like 8/255"),
    ("sweep-device-cuda", [*_SWEEP, "--radii", "1", "--device", "cuda", *_OUT], "no CUDA GPU"),
    ("sweep-output-under-a-file", [*_SWEEP, "--radii", "1", "-o", "{afile}/r"], "is a file"),
]
ROWS += [
    ("evaluate-apgd-eot-samples-zero", [*_EVAL, "--attacks", "apgd-ce", "--set", "apgd-ce.eot_samples=0", *_OUT], "eot_samples must be >= 1"),
    ("evaluate-apgd-dlr-typo", [*_EVAL, "--attacks", "apgd-dlr", "--set", "apgd-dlr.step=5", *_OUT], "no setting 'step'"),
    ("evaluate-cw-abort-early-not-a-bool", [*_EVAL, "--attacks", "cw", "--set", "cw.abort_early=maybe", *_OUT], "abort_early must be true or false"),
]

_CERT = ["robust", "certify", "{model}", "--data", "digits", "--n-per-class", "1", "--sigma", "0.25"]
ROWS += [
    ("certify-sigma-missing", ["robust", "certify", "{model}", *_OUT], "--sigma"),
    ("certify-sigma-zero", [*_CERT[:-1], "0", *_OUT], "sigma must be a positive number"),
    ("certify-sigma-not-a-number", [*_CERT[:-1], "wide", *_OUT], "fraction like 8/255"),
    ("certify-n-zero", [*_CERT, "--n", "0", *_OUT], "positive integer"),
    ("certify-n0-not-an-integer", [*_CERT, "--n0", "1.5", *_OUT], "positive integer"),
    ("certify-alpha-one", [*_CERT, "--alpha", "1", *_OUT], "number in (0, 1)"),
    ("certify-alpha-not-a-number", [*_CERT, "--alpha", "small", *_OUT], "number in (0, 1)"),
    ("certify-batch-zero", [*_CERT, "--batch", "0", *_OUT], "positive integer"),
    ("certify-radii-negative", [*_CERT, "--radii", "0.5,-1", *_OUT], "radii must be positive"),
    ("certify-radii-not-numbers", [*_CERT, "--radii", "0.5,big", *_OUT], "comma-separated numbers"),
    ("certify-directions-zero", [*_CERT, "--directions", "0", *_OUT], "directions must be an integer >= 1"),
    ("certify-postavg-radius-zero", [*_CERT, "--postavg-radius", "0", *_OUT], "radius must be a positive number"),
    ("certify-draws-zero", [*_CERT, "--draws", "0", *_OUT], "draws must be an integer >= 1"),
    ("certify-attack-batch-zero", [*_CERT, "--attack-batch", "0", *_OUT], "positive integer"),
    ("certify-device-cuda", [*_CERT, "--device", "cuda", *_OUT], "no CUDA GPU"),
    ("certify-output-under-a-file", [*_CERT, "-o", "{afile}/r"], "is a file"),
    ("certify-model-missing", ["robust", "certify", "{tmp}/missing.safetensors", "--sigma", "0.25", *_OUT], "missing"),
]
ROWS += [
    ("evaluate-randomness-unknown", [*_EVAL, "--attacks", "square", "--randomness", "sometimes", *_OUT], "invalid choice"),
    ("sweep-randomness-fixed", [*_SWEEP, "--radii", "1", "--randomness", "fixed", *_OUT], "--randomness applies to the adaptive attacks"),
]

# Issue 23: a keyed model on plain images, budgets that cannot be meant, data of another size, seeds.
ROWS += [
    ("evaluate-keyed-model", ["robust", "evaluate", "{keyed}", "--data", "digits", "--n-per-class", "1", "--attacks", "fgsm", *_OUT], "veilnet keyed evaluate"),
    ("sweep-keyed-model", ["robust", "sweep", "{keyed}", "--data", "digits", "--n-per-class", "1", "--radii", "1", *_OUT], "veilnet keyed evaluate"),
    ("certify-keyed-model", ["robust", "certify", "{keyed}", "--data", "digits", "--n-per-class", "1", "--sigma", "0.25", *_OUT], "veilnet keyed evaluate"),
    ("evaluate-eps-8", [*_EVAL, "--attacks", "fgsm", "--eps", "8", *_OUT], "did you mean 8/255"),
    ("sweep-eps-8", [*_SWEEP, "--radii", "1", "--eps", "8", *_OUT], "did you mean 8/255"),
    ("evaluate-other-size", ["robust", "evaluate", "{model}", "--data", "digits:size=30", "--n-per-class", "1", "--attacks", "fgsm", *_OUT], "3×30×30"),
    ("sweep-other-size", ["robust", "sweep", "{model}", "--data", "digits:size=30", "--n-per-class", "1", "--radii", "1", *_OUT], "3×30×30"),
    ("certify-other-size", ["robust", "certify", "{model}", "--data", "digits:size=30", "--n-per-class", "1", "--sigma", "0.25", *_OUT], "3×30×30"),
    ("certify-radius-beyond-diagonal", [*_CERT, "--radii", "0.5,100", *_OUT], "diagonal"),
    ("evaluate-seed-too-large", [*_EVAL, "--attacks", "fgsm", "--seed", "9223372036854775808", *_OUT], "seed"),
    ("certify-seed-too-large", [*_CERT, "--seed", "9223372036854775808", *_OUT], "seed"),
    ("certify-postavg-radius-inf", [*_CERT, "--postavg-radius", "inf", *_OUT], "finite number"),
    ("certify-seed-nan", [*_CERT, "--seed", "nan", *_OUT], "seed"),
]

# A model runs on the data its card records: --data defaults to it, and another data set is refused naming both.
_OTHER_DATA = "trained on 'folder:cifar10-jpeg.zip', not --data 'digits'"
ROWS += [
    ("evaluate-other-data-than-the-card", ["robust", "evaluate", "{cifar_model}", "--data", "digits", "--attacks", "fgsm", *_OUT], _OTHER_DATA),
    ("sweep-other-data-than-the-card", ["robust", "sweep", "{cifar_model}", "--data", "digits", "--radii", "1", *_OUT], _OTHER_DATA),
    ("certify-other-data-than-the-card", ["robust", "certify", "{cifar_model}", "--data", "digits", "--sigma", "0.25", *_OUT], _OTHER_DATA),
    ("certify-data-defaults-to-the-card", ["robust", "certify", "{cifar_model}", "--sigma", "0.25", *_OUT], "cifar10-jpeg.zip"),
    ("certify-no-data-anywhere", ["robust", "certify", "{model}", "--sigma", "0.25", *_OUT], "card records no data set: pass --data"),
]
