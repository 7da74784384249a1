"""Rows for ``veilnet fl run | server | client``: options, models, data and outputs, all checked
before Flower or Ray starts."""

_RUN = ["fl", "run", "--clients", "2", "--rounds", "1"]

ROWS = [
    ("run-no-model", ["fl", "run", "-o", "{tmp}/f"], "--model"),
    ("run-unknown-model", [*_RUN, "--model", "resnet18", "-o", "{tmp}/f"], "unknown model 'resnet18'"),
    ("run-bad-model-arg", [*_RUN, "--model", "vit", "--arg", "heads=0", "-o", "{tmp}/f"], "heads must be a positive integer"),
    ("run-unknown-model-arg", [*_RUN, "--model", "vit", "--arg", "bogus=1", "-o", "{tmp}/f"], "bogus"),
    (
        "run-model-does-not-take-data",
        [*_RUN, "--model", "vit", "--arg", "image_size=16", "--arg", "dim=8", "--arg", "heads=2", "-o", "{tmp}/f"],
        "takes 3×16×16 images",
    ),
    ("run-clients-0", ["fl", "run", "--model", "vit", "--clients", "0", "-o", "{tmp}/f"], "positive integer"),
    ("run-rounds-not-int", ["fl", "run", "--model", "vit", "--rounds", "two", "-o", "{tmp}/f"], "positive integer"),
    ("run-local-epochs-0", [*_RUN, "--model", "vit", "--local-epochs", "0", "-o", "{tmp}/f"], "positive integer"),
    ("run-alpha-0", [*_RUN, "--model", "vit", "--alpha", "0", "-o", "{tmp}/f"], "positive number"),
    ("run-alpha-nan", [*_RUN, "--model", "vit", "--alpha", "nan", "-o", "{tmp}/f"], "positive number"),
    ("run-lr-negative", [*_RUN, "--model", "vit", "--lr", "-1", "-o", "{tmp}/f"], "positive number"),
    ("run-min-clients-above-clients", [*_RUN, "--model", "vit", "--min-clients", "3", "-o", "{tmp}/f"], "min clients must be between 1 and the 2 clients"),
    ("run-more-clients-than-images", ["fl", "run", "--model", "vit", "--clients", "100000", "-o", "{tmp}/f"], "cannot partition"),
    ("run-unknown-data", [*_RUN, "--model", "vit", "--data", "mnist", "-o", "{tmp}/f"], "mnist"),
    ("run-exists", [*_RUN, "--model", "vit", "-o", "{root}"], "exists; pass --force"),
    ("run-output-under-file", [*_RUN, "--model", "vit", "-o", "{afile}/f"], "is a file"),
    ("run-output-is-file", [*_RUN, "--model", "vit", "-o", "{afile}"], "is a file, not a folder"),
    ("run-output-is-file-force", [*_RUN, "--model", "vit", "-o", "{afile}", "--force"], "is a file, not a folder"),
    (
        "run-secagg-one-client",
        ["fl", "run", "--model", "vit", "--clients", "1", "--rounds", "1", "--secagg", "-o", "{tmp}/f"],
        "secure aggregation needs at least 2 clients",
    ),
    (
        "run-secagg-minority",
        ["fl", "run", "--model", "vit", "--clients", "4", "--rounds", "1", "--min-clients", "2", "--secagg", "-o", "{tmp}/f"],
        "min clients must be at least 3 of 4",
    ),
    ("run-secagg-clip-without-secagg", [*_RUN, "--model", "vit", "--secagg-clip", "2", "-o", "{tmp}/f"], "needs --secagg"),
    ("run-secagg-clip-0", [*_RUN, "--model", "vit", "--secagg", "--secagg-clip", "0", "-o", "{tmp}/f"], "positive number"),
    ("run-secagg-clip-inf", [*_RUN, "--model", "vit", "--secagg", "--secagg-clip", "inf", "-o", "{tmp}/f"], "positive number"),
    ("run-client-cpus-0", [*_RUN, "--model", "vit", "--client-cpus", "0", "-o", "{tmp}/f"], "positive number"),
]

_SERVER = ["fl", "server", "--model", "vit", "--clients", "2", "--rounds", "1"]

ROWS += [
    ("server-port-0", [*_SERVER, "--port", "0", "-o", "{tmp}/f"], "port is between 1 and 65535"),
    ("server-port-not-number", [*_SERVER, "--port", "http", "-o", "{tmp}/f"], "expected a port number"),
    ("server-exists", [*_SERVER, "--port", "19990", "-o", "{root}"], "exists; pass --force"),
    ("server-output-is-file", [*_SERVER, "--port", "19990", "-o", "{afile}"], "is a file, not a folder"),
    ("server-unknown-model", ["fl", "server", "--model", "resnet18", "--port", "19990", "-o", "{tmp}/f"], "unknown model"),
    ("server-secagg-minority", [*_SERVER, "--port", "19990", "--min-clients", "1", "--secagg", "-o", "{tmp}/f"], "min clients must be at least 2 of 2"),
    ("server-wait-0", [*_SERVER, "--wait", "0", "-o", "{tmp}/f"], "positive number"),
    ("client-no-partition", ["fl", "client"], "one of the arguments --data --partition is required"),
    ("client-negative-partition", ["fl", "client", "--partition", "-1", "--port", "19991"], "--partition must be 0 or more"),
    ("client-port-too-large", ["fl", "client", "--partition", "0", "--port", "70000"], "port is between 1 and 65535"),
]

# Issue 23: the server's address, non-finite numbers, seeds.
ROWS += [
    ("client-server-no-port", ["fl", "client", "--partition", "0", "--server", "127.0.0.1"], "HOST:PORT"),
    ("client-server-port-too-large", ["fl", "client", "--partition", "0", "--server", ":99999"], "between 1 and 65535"),
    ("client-server-colons", ["fl", "client", "--partition", "0", "--server", "::::"], "HOST:PORT"),
    ("client-server-ipv6-without-brackets", ["fl", "client", "--partition", "0", "--server", "::1:9091"], "brackets"),
    ("run-momentum-nan", [*_RUN, "--model", "vit", "--momentum", "nan", "-o", "{tmp}/f"], "finite number"),
    ("run-weight-decay-inf", [*_RUN, "--model", "vit", "--weight-decay", "inf", "-o", "{tmp}/f"], "finite number"),
    ("run-seed-too-large", [*_RUN, "--model", "vit", "--seed", "9223372036854775808", "-o", "{tmp}/f"], "seed"),
    ("run-subset-huge", [*_RUN, "--model", "vit", "--subset", "1000000", "-o", "{tmp}/f"], "1000000"),
]

# Issue 29: a client with its own data (--data) instead of a partition of the server's.
ROWS += [
    ("client-partition-and-data", ["fl", "client", "--partition", "0", "--data", "digits"], "not allowed with argument"),
    ("client-unknown-data", ["fl", "client", "--data", "mnist", "--port", "19991"], "unknown data set 'mnist'"),
    ("client-data-folder-missing", ["fl", "client", "--data", "folder:{tmp}/nowhere", "--port", "19991"], "nowhere"),
]

# Issue 28: the server's strategy, its settings and the schedule across rounds; the running
# statistics' SecAgg+ clipping range.
ROWS += [
    ("run-strategy-unknown", [*_RUN, "--model", "vit", "--strategy", "fedsgd", "-o", "{tmp}/f"], "invalid choice: 'fedsgd'"),
    (
        "run-server-momentum-with-fedavg",
        [*_RUN, "--model", "vit", "--server-momentum", "0.9", "-o", "{tmp}/f"],
        "--server-momentum is a setting of --strategy fedavgm, not of fedavg",
    ),
    (
        "run-server-lr-with-fedprox",
        [*_RUN, "--model", "vit", "--strategy", "fedprox", "--server-lr", "0.5", "-o", "{tmp}/f"],
        "--server-lr is a setting of --strategy fedavgm or fedadam, not of fedprox",
    ),
    ("run-proximal-mu-with-fedadam", [*_RUN, "--model", "vit", "--strategy", "fedadam", "--proximal-mu", "0.1", "-o", "{tmp}/f"], "not of fedadam"),
    ("run-server-momentum-1", [*_RUN, "--model", "vit", "--strategy", "fedavgm", "--server-momentum", "1", "-o", "{tmp}/f"], "from 0 to below 1"),
    ("run-beta1-negative", [*_RUN, "--model", "vit", "--strategy", "fedadam", "--beta1", "-0.1", "-o", "{tmp}/f"], "from 0 to below 1"),
    ("run-beta2-nan", [*_RUN, "--model", "vit", "--strategy", "fedadam", "--beta2", "nan", "-o", "{tmp}/f"], "from 0 to below 1"),
    ("run-tau-0", [*_RUN, "--model", "vit", "--strategy", "fedadam", "--tau", "0", "-o", "{tmp}/f"], "positive number"),
    ("run-server-lr-inf", [*_RUN, "--model", "vit", "--strategy", "fedavgm", "--server-lr", "inf", "-o", "{tmp}/f"], "positive number"),
    ("run-proximal-mu-negative", [*_RUN, "--model", "vit", "--strategy", "fedprox", "--proximal-mu", "-1", "-o", "{tmp}/f"], "0 or more"),
    ("run-lr-schedule-unknown", [*_RUN, "--model", "vit", "--lr-schedule", "step", "-o", "{tmp}/f"], "invalid choice: 'step'"),
    (
        "run-secagg-stats-clip-without-secagg",
        [*_RUN, "--model", "vit", "--secagg-stats-clip", "64", "-o", "{tmp}/f"],
        "--secagg-stats-clip is a SecAgg+ clipping range; it needs --secagg",
    ),
    ("run-secagg-stats-clip-0", [*_RUN, "--model", "vit", "--secagg", "--secagg-stats-clip", "0", "-o", "{tmp}/f"], "positive number"),
    (
        "server-strategy-setting-mismatch",
        [*_SERVER, "--port", "19990", "--beta1", "0.5", "-o", "{tmp}/f"],
        "--beta1 is a setting of --strategy fedadam, not of fedavg",
    ),
]

# Issue 28: TLS for the deployment.
ROWS += [
    (
        "server-tls-partial",
        [*_SERVER, "--port", "19990", "--ssl-certfile", "{afile}", "-o", "{tmp}/f"],
        "TLS needs all of --ssl-certfile, --ssl-keyfile and --ssl-ca-certfile",
    ),
    (
        "server-tls-missing-file",
        [*_SERVER, "--port", "19990", "--ssl-certfile", "{afile}", "--ssl-keyfile", "{afile}", "--ssl-ca-certfile", "{tmp}/nowhere.pem", "-o", "{tmp}/f"],
        "nowhere.pem: No such file or directory",
    ),
    ("client-root-certificates-missing", ["fl", "client", "--partition", "0", "--port", "19991", "--root-certificates", "{tmp}/ca.pem"], "--root-certificates"),
]
