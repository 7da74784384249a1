"""``veilnet fl run``: a whole federation on one machine with Flower's simulation engine (Ray).

The server app runs in this process (a thread of :func:`flwr.simulation.run_simulation`); each
client's messages are handled by the same :data:`~veilnet.federated.client_app.app` in Ray
actors. The output folder gets ``federated.json`` (:class:`FederatedResult`), ``report.md``,
``rounds.png`` and the integrated model (``model.safetensors`` + card).

Flower 1.41 marks :func:`flwr.simulation.run_simulation` deprecated in favour of ``flwr run``
against a local simulation federation (it logs one warning); it is used here because it runs the
server app in this process, where the measurements stay without a round trip through files.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from veilnet.federated.errors import FederationError, round_short
from veilnet.federated.results import PLOT, REPORT, RESULT, FederatedResult
from veilnet.federated.task import FederatedConfig
from veilnet.paths import prepare_output, write_text

__all__ = ["FederationError", "OUTPUTS", "quiet_environment", "run", "finish"]

#: The files a run writes in its output folder (an existing one needs --force).
OUTPUTS = (RESULT, REPORT, PLOT, "model.safetensors", "model.json")

#: Environment that keeps Flower and Ray from phoning home or asking for updates; a value the
#: user set is kept.
QUIET = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}


def quiet_environment(verbose: bool = False) -> None:
    """Set :data:`QUIET` (unless set) and, unless ``verbose``, Flower's console log level to
    WARNING (the progress bar shows the rounds)."""
    import logging

    for name, value in QUIET.items():
        os.environ.setdefault(name, value)
    from flwr.supercore.logger import console_handler

    console_handler.setLevel(logging.INFO if verbose else logging.WARNING)


def run(
    config: FederatedConfig,
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    baseline: bool = True,
    progress: bool = True,
    client_cpus: float | None = None,
    verbose: bool = False,
) -> FederatedResult:
    """Run ``config``'s federation in simulation, then its baseline; write the outputs.

    ``client_cpus`` is each client's share of the CPUs (Ray's ``num_cpus``; default all of them,
    so clients train one after another, each with every core). Raises
    :class:`FederationError` as soon as a round gets fewer than ``config.needed`` clients'
    updates (:func:`veilnet.federated.errors.round_short`).
    """
    out = prepare_output(out_dir, force=force, exists=OUTPUTS)
    from veilnet.federated import task

    task.build_model(config)  # a model that does not take the data fails before Ray starts
    quiet_environment(verbose)
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from veilnet.federated.client_app import app as client_app
    from veilnet.federated.server_app import Federation

    federation = Federation(config, progress=progress)
    server_app = ServerApp()
    server_app.main()(federation.main)
    cpus = float(client_cpus or os.cpu_count() or 1)
    start = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=config.clients,
        backend_config={
            "client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
            "init_args": {"num_cpus": max(int(os.cpu_count() or 1), int(cpus)), "include_dashboard": False, "log_to_driver": verbose},
        },
        verbose_logging=verbose,
    )
    return finish(federation.config, federation, out, mode="simulation", seconds=time.perf_counter() - start, baseline=baseline, progress=progress)


def finish(config: FederatedConfig, federation: Any, out: Path, *, mode: str, seconds: float, baseline: bool, progress: bool) -> FederatedResult:
    """Check the federation completed, train the baseline, save model, JSON, report and plot."""
    import flwr

    from veilnet import models
    from veilnet.federated import results, task

    check_complete(config, federation.rounds, federation.keyed, federation.weights)
    model = task.set_weights(task.build_model(config), federation.weights)
    test = task.central_test(config)
    base = task.train_baseline(config, progress=progress) if baseline else None
    notes = []
    if config.model not in ("vit", "convmixer"):
        notes.append(f"No keyed step: model {config.model} has no key scheme (vit or convmixer).")
    out.mkdir(parents=True, exist_ok=True)
    path = models.save(
        model,
        out / "model",
        data=config.data,
        metrics={"test_accuracy": federation.rounds[-1]["central_accuracy"], "federated": config.to_dict()},
        input_shape=test.image_shape,
        force=True,
    )
    result = FederatedResult(
        config=config,
        mode=mode,
        initial_accuracy=federation.initial_accuracy,
        rounds=federation.rounds,
        keyed=federation.keyed,
        cross_key=federation.cross_key,
        baseline=base,
        seconds=seconds,
        flower=flwr.__version__,
        chance=1.0 / test.num_classes,
        model_path=str(path),
        notes=notes,
    )
    result.save(out / RESULT)
    write_text(out / REPORT, results.markdown(result))
    results.plot_rounds(result, out / PLOT)
    return result


def check_complete(config: FederatedConfig, rounds: list[dict[str, Any]], keyed: list[Any], weights: Any) -> None:
    """Raise :class:`FederationError` unless every round had ``config.needed`` clients' updates,
    the global model is finite (it was not keyed otherwise) and, for a keyable model, at least
    ``config.needed`` clients answered the keyed step."""
    from veilnet.federated import task

    if weights is None or len(rounds) < config.rounds:
        raise FederationError(f"the federation stopped after {len(rounds)} of {config.rounds} rounds")
    if not task.is_finite(weights):
        diverged = next((r["round"] for r in rounds if not math.isfinite(float(r.get("central_loss", math.nan)))), rounds[-1]["round"])
        raise FederationError(f"the training diverged: the global model's weights are not finite after round {diverged}; lower --lr")
    for record in rounds:
        got = int(record.get("clients", 0))
        if got < config.needed:
            raise round_short(record["round"], got, config.needed, record.get("failures", []))
    if config.model in ("vit", "convmixer") and len(keyed) < config.needed:
        raise FederationError(f"only {len(keyed)} of the {config.needed} clients needed answered the keyed step")
