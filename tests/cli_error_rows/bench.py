"""``veilnet bench privacy``: options out of range, sweeps that name nothing, outputs and resumes,
all refused before any training."""

_P = ["bench", "privacy", "--quick"]

ROWS = [
    ("privacy-no-output", _P, "--output DIR is required"),
    ("privacy-no-data", ["bench", "privacy", "-o", "{tmp}/p"], "--data SPEC is required without --quick"),
    ("privacy-too-many-images", [*_P, "--train-images", "5000", "-o", "{tmp}/p"], "train-images is 5000 but digits:size=16 has 1438 train images"),
    ("privacy-resume-nothing", [*_P, "--resume", "-o", "{tmp}/p"], "nothing to resume"),
    ("privacy-unknown-defence", [*_P, "--defences", "nosuch", "-o", "{tmp}/p"], "unknown defence nosuch"),
    ("privacy-sweep-not-assignment", [*_P, "--sweep", "noise", "-o", "{tmp}/p"], "--sweep takes DEFENCE=V1,V2"),
    ("privacy-sweep-nan", [*_P, "--sweep", "noise=nan", "-o", "{tmp}/p"], "expected comma-separated numbers"),
    ("privacy-sweep-unknown", [*_P, "--sweep", "nosuch=1", "-o", "{tmp}/p"], "--sweep names nosuch, not among the defences run"),
    ("privacy-arch", [*_P, "--arch", "vgg", "-o", "{tmp}/p"], "unknown architecture 'vgg'"),
    ("privacy-victims-over-test", [*_P, "--victim-images", "50", "--test-images", "10", "-o", "{tmp}/p"], "must not exceed test-images"),
    ("privacy-epochs-0", [*_P, "--epochs", "0", "-o", "{tmp}/p"], "expected a positive integer"),
    ("privacy-width-nan", [*_P, "--width", "nan", "-o", "{tmp}/p"], "expected a finite number"),
    ("privacy-width-negative", [*_P, "--width", "-1", "-o", "{tmp}/p"], "width must be a positive number"),
    ("privacy-output-is-a-file", [*_P, "-o", "{afile}"], "not a folder"),
]
