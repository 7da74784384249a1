"""``veilnet fl run | server | client``: a federation in simulation, or as separate processes.

Every check a user's mistake can fail (options, output folder, data spec, model, ports) runs
before Flower or Ray starts; torch and Flower are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any

from veilnet.cli import add_group, add_output, finite_float, parse_assignments, positive_int, seed
from veilnet.errors import ConfigError

#: ``--strategy``'s choices (:data:`veilnet.federated.task.STRATEGIES`, which imports torch).
_STRATEGY_CHOICES = ("fedavg", "fedavgm", "fedadam", "fedprox")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, got {value}")
    return value


def _address(text: str) -> str:
    """argparse ``type`` for ``--server``: HOST:PORT with a port from 1 to 65535 and an IPv6 host
    in brackets (``[::1]:9091``), else a one-line usage error saying what is wrong."""
    host, sep, port = text.rpartition(":")
    reason = None if sep else "no port"
    try:
        _port(port)
    except argparse.ArgumentTypeError as exc:
        reason = reason or str(exc)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        reason = reason or "an IPv6 host goes in brackets"
    if not host.strip("[]"):
        reason = reason or "no host"
    if reason is not None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (an IPv6 host in brackets, e.g. [::1]:9091), got {text!r}: {reason}")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    """argparse ``type``: a number in [0, 1) (a momentum, Adam's β)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to below 1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to below 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of 0 or more, got {text}")
    return value


#: Each strategy option → the strategies that take it → the Flower constructor keyword it sets.
_STRATEGY_OPTIONS = {
    "server_lr": {"fedavgm": "server_learning_rate", "fedadam": "eta"},
    "server_momentum": {"fedavgm": "server_momentum"},
    "beta1": {"fedadam": "beta_1"},
    "beta2": {"fedadam": "beta_2"},
    "tau": {"fedadam": "tau"},
    "proximal_mu": {"fedprox": "proximal_mu"},
}


def _strategy_args(args: argparse.Namespace) -> dict[str, float]:
    """The settings of ``--strategy`` its options give; ConfigError for an option another
    strategy takes."""
    chosen = {}
    for option, takers in _STRATEGY_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if args.strategy not in takers:
            raise ConfigError(f"--{option.replace('_', '-')} is a setting of --strategy {' or '.join(takers)}, not of {args.strategy}")
        chosen[takers[args.strategy]] = value
    return chosen


def config_from(args: argparse.Namespace) -> Any:
    """The :class:`~veilnet.federated.task.FederatedConfig` the options describe, its model and
    data checked (unknown model, bad model argument, a model that does not take the data)."""
    import dataclasses

    from veilnet import models
    from veilnet.federated.task import PAPER_TRAIN, FederatedConfig, build_model, client_data
    from veilnet.training import TrainConfig

    models.signature(args.model)
    for option in ("secagg_clip", "secagg_stats_clip"):
        if getattr(args, option) is not None and not args.secagg:
            raise ConfigError(f"--{option.replace('_', '-')} is a SecAgg+ clipping range; it needs --secagg")
    train = {"optimizer": args.optimizer, "lr": args.lr, "momentum": args.momentum, "batch_size": args.batch_size, "weight_decay": args.weight_decay}
    train = TrainConfig.from_dict({**dataclasses.asdict(PAPER_TRAIN), **{k: v for k, v in train.items() if v is not None}, "augment": args.augment})
    config = FederatedConfig(
        model=args.model,
        data=args.data,
        clients=args.clients,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        model_args=parse_assignments(args.arg),
        partition="dirichlet" if args.alpha is not None else "iid",
        alpha=args.alpha if args.alpha is not None else 0.5,
        train=train,
        seed=args.seed,
        min_clients=args.min_clients,
        subset=args.subset,
        test_subset=args.test_subset,
        secagg=args.secagg,
        **{option: getattr(args, option) for option in ("secagg_clip", "secagg_stats_clip") if getattr(args, option) is not None},
        strategy=args.strategy,
        strategy_args=_strategy_args(args),
        lr_schedule=args.lr_schedule,
    )
    try:
        build_model(config)
    except TypeError as exc:  # a model argument the constructor does not take
        raise ConfigError(f"model {args.model}: {str(exc).splitlines()[0]}") from None
    client_data(config, 0)  # too many clients for the data fails here, not in every client
    return config


def _need(*modules: str) -> None:
    """ConfigError (one line, exit 2) naming the extra to install when Flower (or Ray, which its
    simulation engine needs) is missing; checked before any work."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            raise ConfigError(f"veilnet fl needs {name}: pip install 'veilnet[fl]'") from None


def _run(args: argparse.Namespace) -> int:
    _need("flwr", "ray")
    from veilnet.federated.simulation import OUTPUTS, run
    from veilnet.paths import prepare_output

    prepare_output(args.output, force=args.force, exists=OUTPUTS)
    config = config_from(args)
    result = run(config, args.output, force=args.force, baseline=not args.no_baseline, client_cpus=args.client_cpus, verbose=args.verbose)
    _summary(result, args.output)
    return 0


def _summary(result: Any, output: str) -> None:
    clients, took = result.config.clients, [int(r.get("clients", 0)) for r in result.rounds]
    who = f"of {clients} clients" if set(took) == {clients} else f"with {', '.join(map(str, took))} of {clients} clients taking part"
    line = f"federated accuracy {result.final_accuracy:.4f} after {result.config.rounds} rounds {who} ({result.seconds:.1f} s)"
    if result.baseline is not None:
        line += f"; centralised baseline {result.baseline['final_accuracy']:.4f}"
    print(line)
    if result.keyed:
        same = sum(k.keyed_accuracy == k.plain_accuracy for k in result.keyed)
        print(
            f"keyed step: {same} of {len(result.keyed)} clients' keyed accuracy equals the plain "
            f"model's; cross-key accuracy {result.cross_key_mean:.4f} (chance {result.chance:.4f})"
        )
    print(f"wrote {output}/federated.json, report.md, rounds.png and model.safetensors")


def _server(args: argparse.Namespace) -> int:
    _need("flwr")
    from veilnet.federated import deployment
    from veilnet.federated.simulation import OUTPUTS
    from veilnet.paths import prepare_output

    prepare_output(args.output, force=args.force, exists=(*OUTPUTS, deployment.ROUNDS_LOG))
    deployment.check_ports(args.host, [args.port])
    tls_options = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile, "ssl_ca_certfile": args.ssl_ca_certfile}
    given = [option for option, path in tls_options.items() if path is not None]
    if given and len(given) < len(tls_options):
        raise ConfigError("TLS needs all of --ssl-certfile, --ssl-keyfile and --ssl-ca-certfile")
    deployment.check_files(**tls_options)
    config = config_from(args)
    result = deployment.run_server(
        config,
        args.output,
        host=args.host,
        port=args.port,
        force=args.force,
        baseline=not args.no_baseline,
        wait_seconds=args.wait,
        round_timeout=args.round_timeout,
        tls=deployment.ServerTls(args.ssl_certfile, args.ssl_keyfile, args.ssl_ca_certfile) if given else None,
        verbose=args.verbose,
    )
    _summary(result, args.output)
    return 0


def _client(args: argparse.Namespace) -> int:
    _need("flwr")
    from veilnet import data
    from veilnet.federated import deployment

    if args.partition is not None and args.partition < 0:
        raise ConfigError(f"--partition must be 0 or more, got {args.partition}")
    if args.data is not None:  # a spec that does not load fails here; whether it fits the model, when the server asks
        for split in ("train", "test"):
            data.load(args.data, split)
    deployment.check_ports(args.host, [args.port])
    deployment.check_files(root_certificates=args.root_certificates)
    return deployment.run_client(
        partition=args.partition,
        data=args.data,
        server=args.server,
        host=args.host,
        port=args.port,
        root_certificates=args.root_certificates,
        verbose=args.verbose,
    )


def _federation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo model name (vit or convmixer get a key per client at the end)")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="model keyword argument (repeatable)")
    p.add_argument("--data", default="digits", help="data spec (default: digits)")
    p.add_argument("--clients", type=positive_int, default=10, help="number of clients (default 10, the paper's)")
    p.add_argument("--rounds", type=positive_int, default=10, help="FedAvg rounds (default 10, the paper's)")
    p.add_argument("--local-epochs", type=positive_int, default=1, help="local epochs per round (default 1: integration every epoch)")
    p.add_argument("--alpha", type=_positive_float, help="non-IID: Dirichlet(α) label skew of the training images (default: IID)")
    p.add_argument("--min-clients", type=positive_int, help="fewest clients a round needs (default: all); the others may fail")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], help="local optimiser (default sgd, the paper's)")
    p.add_argument("--lr", type=_positive_float, help="local learning rate (default 1e-3, the paper's)")
    p.add_argument("--momentum", type=finite_float, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=positive_int, help="local batch size (default 8, the paper's)")
    p.add_argument("--weight-decay", type=finite_float, help="weight decay (default 0)")
    p.add_argument("--augment", action="store_true", help="random crop and flip in local training")
    p.add_argument("--subset", type=positive_int, metavar="N", help="use N training images per class")
    p.add_argument("--test-subset", type=positive_int, metavar="N", help="use N test images per class")
    p.add_argument("--seed", type=seed, default=0, help="seed of the initial model, partitions and local shuffling (keys always come from the OS CSPRNG)")
    p.add_argument(
        "--secagg",
        action="store_true",
        help="secure aggregation (Flower's SecAgg+): the server sees only the sum of the clients' updates; a round needs a majority of the clients",
    )
    p.add_argument(
        "--secagg-clip",
        type=_positive_float,
        metavar="C",
        help="SecAgg+ clipping range: each update, scaled by n_k / max n_k, must lie within ±C (default 8); the quantisation step is 2C / 2^22",
    )
    p.add_argument(
        "--secagg-stats-clip",
        type=_positive_float,
        metavar="C",
        help="SecAgg+ clipping range of the running statistics' updates (BatchNorm's mean and variance; default 1024); their quantisation step is 2C / 2^22",
    )
    p.add_argument(
        "--strategy",
        choices=list(_STRATEGY_CHOICES),
        default="fedavg",
        help="the server's strategy, Flower's: fedavg (default), fedavgm (server momentum), fedadam (server Adam), fedprox (clients' proximal term)",
    )
    p.add_argument("--server-lr", type=_positive_float, help="fedavgm's server learning rate or fedadam's η (default: Flower's)")
    p.add_argument("--server-momentum", type=_fraction, help="fedavgm's server momentum (default: Flower's)")
    p.add_argument("--beta1", type=_fraction, help="fedadam's β1 (default: Flower's)")
    p.add_argument("--beta2", type=_fraction, help="fedadam's β2 (default: Flower's)")
    p.add_argument("--tau", type=_positive_float, help="fedadam's τ, its adaptivity (default: Flower's)")
    p.add_argument("--proximal-mu", type=_non_negative, help="fedprox's μ: each client adds μ/2·‖w − w_global‖² to its loss (default: Flower's)")
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="the clients' learning rate across rounds: constant (default) or cosine from --lr in round 1 towards 0",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the centralised baseline")
    p.add_argument("-v", "--verbose", action="store_true", help="show Flower's and Ray's logs")
    add_output(p, help="output folder (federated.json, report.md, rounds.png, model.safetensors)")


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "fl")

    r = group.add_parser("run", help="a whole federation on this machine (Flower's simulation engine)")
    _federation_options(r)
    r.add_argument("--client-cpus", type=_positive_float, help="CPUs per simulated client (default: all, so clients train in turn)")
    r.set_defaults(func=_run)

    s = group.add_parser("server", help="the federation's server: a Flower SuperLink running veilnet's server app")
    _federation_options(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=9091, help="the SuperLink's one HTTP port (the clients connect to it; default 9091)")
    s.add_argument("--wait", type=_positive_float, default=300.0, help="seconds to wait for all clients to connect (default 300)")
    s.add_argument(
        "--round-timeout", type=_positive_float, default=600.0, help="seconds a round waits for a client's answer before counting it as failed (default 600)"
    )
    tls = "TLS (Flower's SuperLink option of the same name; all three, or none: then the connections are unencrypted and unauthenticated)"
    s.add_argument("--ssl-certfile", metavar="PEM", help=f"{tls}: the server's certificate, naming the address the clients dial")
    s.add_argument("--ssl-keyfile", metavar="PEM", help=f"{tls}: the server's private key")
    s.add_argument("--ssl-ca-certfile", metavar="PEM", help=f"{tls}: the CA certificate that signed the server's (the clients get it too)")
    s.set_defaults(func=_server)

    c = group.add_parser("client", help="one client: a Flower SuperNode holding its own data or partition i of the server's")
    images = c.add_mutually_exclusive_group(required=True)
    images.add_argument(
        "--data",
        metavar="SPEC",
        help="this client's own data set (digits, folder:PATH, cifar10:PATH): it trains on its train split and reports on its test split; "
        "its images and classes must fit the server's model",
    )
    images.add_argument("--partition", type=int, help="instead: partition i of the server's data set (0 ≤ i < the server's --clients)")
    c.add_argument("--server", type=_address, default="127.0.0.1:9091", help="the server's HOST:PORT (default 127.0.0.1:9091)")
    c.add_argument("--host", default="127.0.0.1", help="address of this client's ClientAppIo API (default 127.0.0.1)")
    c.add_argument(
        "--port",
        type=_port,
        default=9094,
        help="port of this client's own HTTP API, where its client app processes connect (default 9094; one per client on a machine)",
    )
    c.add_argument(
        "--root-certificates",
        metavar="PEM",
        help="connect over TLS, verifying the server's certificate with this CA certificate (its --ssl-ca-certfile); without it the connection is unencrypted",
    )
    c.add_argument("-v", "--verbose", action="store_true", help="show Flower's logs")
    c.set_defaults(func=_client)
