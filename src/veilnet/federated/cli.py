"""``veilnet fl run | server | client``: a federation in simulation, or as separate processes.

Every check a user's mistake can fail (options, output folder, data spec, model, ports) runs
before Flower or Ray starts; torch and Flower are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any

from veilnet.cli import add_group, add_output, finite_float, parse_assignments, positive_int, seed
from veilnet.errors import ConfigError


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


def config_from(args: argparse.Namespace) -> Any:
    """The :class:`~veilnet.federated.task.FederatedConfig` the options describe, its model and
    data checked (unknown model, bad model argument, a model that does not take the data)."""
    import dataclasses

    from veilnet import models
    from veilnet.federated.task import PAPER_TRAIN, FederatedConfig, build_model, client_data
    from veilnet.training import TrainConfig

    models.signature(args.model)
    if args.secagg_clip is not None and not args.secagg:
        raise ConfigError("--secagg-clip is SecAgg+'s clipping range; it needs --secagg")
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
        **({"secagg_clip": args.secagg_clip} if args.secagg_clip is not None else {}),
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
    return deployment.run_client(partition=args.partition, data=args.data, server=args.server, host=args.host, port=args.port, verbose=args.verbose)


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
    c.add_argument("-v", "--verbose", action="store_true", help="show Flower's logs")
    c.set_defaults(func=_client)
