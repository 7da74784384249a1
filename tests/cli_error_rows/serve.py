"""``veilnet serve`` and ``veilnet query``: options, models, addresses, tokens, secrets, servers.

Every ``serve`` row fails before the server would listen (``--port 0`` where the row is not about
the address, so none can take a real port); every ``query`` row fails before an image is sent
(``http://127.0.0.1:1`` is a port nothing listens on).
"""

NO_SERVER = "http://127.0.0.1:1"

ROWS = [
    # serve: the model
    ("serve-plain-model", ["serve", "{model}", "--no-auth", "--port", "0"], "must be transformed"),
    ("serve-keyed-card-without-parameters", ["serve", "{keyed_bare}", "--no-auth", "--port", "0"], "extra.keyed must give"),
    ("serve-missing-model", ["serve", "{tmp}/missing", "--no-auth", "--port", "0"], "missing"),
    ("serve-compile-with-a-value", ["serve", "{model}", "--no-auth", "--port", "0", "--compile=on"], "ignored explicit argument 'on'"),
    ("serve-corrupt-card", ["serve", "{corrupt_json}", "--no-auth", "--port", "0"], "corrupt"),
    # serve: device, address, limits
    ("serve-device-cuda", ["serve", "{model}", "--no-auth", "--port", "0", "--device", "cuda"], "no CUDA GPU"),
    ("serve-device-unknown", ["serve", "{model}", "--no-auth", "--port", "0", "--device", "tpu9"], "device"),
    ("serve-port-out-of-range", ["serve", "{model}", "--no-auth", "--port", "70000"], "--port must be in 0–65535"),
    ("serve-port-not-a-number", ["serve", "{model}", "--no-auth", "--port", "http"], "invalid int value"),
    ("serve-host-not-here", ["serve", "{model}", "--no-auth", "--port", "0", "--host", "256.0.0.1"], "cannot listen on 256.0.0.1"),
    ("serve-max-batch-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--max-batch", "0"], "--max-batch must be an integer ≥ 1"),
    (
        "serve-read-timeout-zero",
        ["serve", "{model}", "--no-auth", "--port", "0", "--read-timeout", "0"],
        "--read-timeout must be a finite number in (0, 86400]",
    ),
    ("serve-threads-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--threads", "0"], "--threads must be an integer ≥ 1"),
    ("serve-chunk-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--chunk", "0"], "--chunk must be an integer ≥ 1"),
    ("serve-idle-timeout-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--idle-timeout", "0"], "--idle-timeout must be a finite number"),
    (
        "serve-shutdown-timeout-negative",
        ["serve", "{model}", "--no-auth", "--port", "0", "--shutdown-timeout", "-1"],
        "--shutdown-timeout must be a finite number",
    ),
    (
        "serve-per-client-cap-zero",
        ["serve", "{model}", "--no-auth", "--port", "0", "--max-connections-per-client", "0"],
        "--max-connections-per-client must be an integer ≥ 1",
    ),
    ("serve-workers-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--workers", "0"], "--workers must be an integer ≥ 1"),
    ("serve-workers-not-a-number", ["serve", "{model}", "--no-auth", "--port", "0", "--workers", "two"], "invalid int value"),
    ("serve-max-body-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--max-body-mb", "0"], "--max-body-mb must be a finite number"),
    ("serve-max-body-nan", ["serve", "{model}", "--no-auth", "--port", "0", "--max-body-mb", "nan"], "--max-body-mb must be a finite number"),
    ("serve-batch-wait-nan", ["serve", "{model}", "--no-auth", "--port", "0", "--batch-wait-ms", "nan"], "--batch-wait-ms must be a finite number"),
    ("serve-batch-wait-negative", ["serve", "{model}", "--no-auth", "--port", "0", "--batch-wait-ms", "-1"], "--batch-wait-ms must be a finite number"),
    ("serve-read-timeout-inf", ["serve", "{model}", "--no-auth", "--port", "0", "--read-timeout", "inf"], "--read-timeout must be a finite number"),
    ("serve-head-timeout-nan", ["serve", "{model}", "--no-auth", "--port", "0", "--head-timeout", "nan"], "--head-timeout must be a finite number"),
    ("serve-idle-timeout-nan", ["serve", "{model}", "--no-auth", "--port", "0", "--idle-timeout", "nan"], "--idle-timeout must be a finite number"),
    ("serve-shutdown-timeout-over-a-day", ["serve", "{model}", "--no-auth", "--port", "0", "--shutdown-timeout", "1e9"], "in (0, 86400]"),
    ("serve-max-connections-zero", ["serve", "{model}", "--no-auth", "--port", "0", "--max-connections", "0"], "--max-connections must be an integer ≥ 1"),
    # serve: tokens and TLS
    ("serve-token-file-missing", ["serve", "{model}", "--port", "0", "--token-file", "{tmp}/tokens.txt"], "cannot be read"),
    ("serve-token-too-short", ["serve", "{model}", "--port", "0", "--token-file", "{afile}"], "shorter than 16"),
    ("serve-no-auth-and-token-file", ["serve", "{model}", "--port", "0", "--no-auth", "--token-file", "{afile}"], "contradict"),
    ("serve-tls-cert-without-key", ["serve", "{model}", "--no-auth", "--port", "0", "--tls-cert", "{afile}"], "both --tls-cert and --tls-key"),
    (
        "serve-tls-file-missing",
        ["serve", "{model}", "--no-auth", "--port", "0", "--tls-cert", "{tmp}/cert.pem", "--tls-key", "{tmp}/key.pem"],
        "does not exist",
    ),
    ("serve-tls-not-a-certificate", ["serve", "{model}", "--no-auth", "--port", "0", "--tls-cert", "{afile}", "--tls-key", "{afile}"], "TLS certificate"),
    # query
    ("query-no-inputs", ["query", "--server", NO_SERVER, "--key", "{key}"], "give image files or --data"),
    ("query-files-and-data", ["query", "--server", NO_SERVER, "--key", "{key}", "--data", "digits", "{afile}"], "not both"),
    ("query-limit-zero", ["query", "--server", NO_SERVER, "--key", "{key}", "--data", "digits", "--limit", "0"], "--limit must be an integer ≥ 1"),
    ("query-url-without-scheme", ["query", "--server", "127.0.0.1:8000", "--key", "{key}", "{afile}"], "must start with http"),
    ("query-secret-missing", ["query", "--server", NO_SERVER, "--key", "{tmp}/key.json", "{afile}"], "does not exist"),
    ("query-token-file-missing", ["query", "--server", NO_SERVER, "--key", "{key}", "--token-file", "{tmp}/token.txt", "{afile}"], "cannot be read"),
    ("query-ca-file-not-a-certificate", ["query", "--server", "https://127.0.0.1:1", "--key", "{key}", "--ca-file", "{afile}", "{afile}"], "CA file"),
    ("query-server-unreachable", ["query", "--server", NO_SERVER, "--key", "{key}", "{afile}"], "unreachable"),
    ("query-unknown-encoding", ["query", "--server", NO_SERVER, "--key", "{key}", "--encoding", "json", "{afile}"], "invalid choice"),
]

# complex-valued networks: split (the model owner), serve (the server's part only), query (the device's part)
ROWS += [
    ("split-plain-model", ["split", "{model}", "-o", "{tmp}/d"], "not a complex-valued network"),
    ("split-a-part-again", ["split", "{complex_server}", "-o", "{tmp}/d"], "already a part"),
    ("split-missing-model", ["split", "{tmp}/missing", "-o", "{tmp}/d"], "missing"),
    ("split-output-exists", ["split", "{complex}", "-o", "{root}/split"], "exists; pass --force"),
    ("split-output-under-file", ["split", "{complex}", "-o", "{afile}/d"], "is a file"),
    ("split-pool-size-zero", ["split", "{complex}", "-o", "{tmp}/d", "--pool-data", "digits", "--pool-size", "0"], "expected a positive integer"),
    ("split-pool-of-other-images", ["split", "{complex}", "-o", "{tmp}/d", "--pool-data", "digits:channels=1", "--pool-size", "4"], "image shapes disagree"),
    ("split-pool-larger-than-data", ["split", "{complex}", "-o", "{tmp}/d", "--pool-data", "digits", "--pool-size", "100000"], "a pool of 100000 images"),
    ("split-pool-unknown-data", ["split", "{complex}", "-o", "{tmp}/d", "--pool-data", "nosuchdata"], "nosuchdata"),
    ("serve-whole-complex-network", ["serve", "{complex}", "--no-auth", "--port", "0"], "serve only its processor"),
    ("serve-complex-device-part", ["serve", "{complex_device}", "--no-auth", "--port", "0"], "the device part"),
    ("query-pool-with-a-key", ["query", "--server", NO_SERVER, "--secret", "{key}", "--pool", "digits", "{afile}"], "--secret must be a device part"),
    (
        "query-seed-with-a-plain-model",
        ["query", "--server", NO_SERVER, "--secret", "{model}", "--seed", "1", "{afile}"],
        "not a complex-valued network's device part",
    ),
    ("query-seed-with-a-server-part", ["query", "--server", NO_SERVER, "--secret", "{complex_server}", "--seed", "1", "{afile}"], "holds complex-processor"),
    ("query-pool-of-other-images", ["query", "--server", NO_SERVER, "--secret", "{complex_device}", "--pool", "digits:channels=1", "{afile}"], "takes 3×32×32"),
    (
        "query-pool-size-zero",
        ["query", "--server", NO_SERVER, "--secret", "{complex_device}", "--pool", "digits", "--pool-size", "0", "{afile}"],
        "expected a positive integer",
    ),
    ("query-device-missing", ["query", "--server", NO_SERVER, "--secret", "{tmp}/device.json", "--seed", "1", "{afile}"], "does not exist"),
    ("query-complex-device-unreachable", ["query", "--server", NO_SERVER, "--secret", "{complex_device}", "{afile}"], "unreachable"),
]
