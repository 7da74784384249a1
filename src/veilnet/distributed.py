"""One command on several processes: torch.distributed as ``torchrun`` starts it.

``torchrun --nproc-per-node N -m veilnet train ...`` starts N copies of the command, each with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment
(``--nnodes M`` with a rendezvous endpoint spreads them over M machines). :func:`session` reads
that environment and joins the process group (gloo on the CPU, NCCL on CUDA, one GPU per
process: ``cuda:LOCAL_RANK``); a command started without torchrun is a world of one process and
none of this costs it anything. The helpers below are collective: every rank calls them at the
same point, in the same order.

* :func:`current` — this process's :class:`World` (rank, size, local rank); :meth:`World.part`
  cuts ``n`` items into the contiguous block this rank owns.
* :func:`wrap` — a model under DistributedDataParallel (gradients averaged over the ranks);
  :func:`sum_gradients` and :func:`total` for a step DDP cannot take (one that calls a model's
  parts one by one, or differentiates a critic twice): the gradients summed over the ranks, and
  a sum over the ranks that gradients flow back through.
* :func:`from_main` — run a check or a read on rank 0 only and hand its result (or its
  :class:`~veilnet.errors.VeilnetError`) to every rank, so the ranks fail together and a
  folder on one machine is read by one process.
* :func:`gather`, :func:`all_sum`, :func:`barrier` — merge per-rank results.
* :func:`rank_seed` — the seed of this rank's own random stream.

Only rank 0 writes files and draws progress bars (:func:`is_main`).
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from veilnet.errors import ConfigError

T = TypeVar("T")

#: The variables torchrun sets for each process it starts.
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: How long a rank waits for the others at a collective before it fails: an evaluation's ranks
#: may finish their shares hours apart (torch's default is 30 minutes). A rank that dies ends the
#: job sooner: torchrun stops the others.
WAIT = timedelta(hours=48)


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` in ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous block of ``n`` items, cut as :func:`torch.tensor_split` cuts
        (the first ``n mod size`` ranks get one item more; a rank may get none)."""
        q, m = divmod(n, self.size)
        start = self.rank * q + min(self.rank, m)
        return slice(start, start + q + (self.rank < m))


def from_env(environ: dict[str, str] | None = None) -> World:
    """The :class:`World` torchrun's variables describe (a world of one without them)."""
    env = os.environ if environ is None else environ
    if not any(name in env for name in ENV):
        return World()
    try:
        rank, size, local = (int(env[name]) for name in ENV)
    except (KeyError, ValueError):
        raise ConfigError(
            f"torch.distributed needs {', '.join(ENV)} set to integers (torchrun sets them); got " + ", ".join(f"{n}={env.get(n)!r}" for n in ENV)
        ) from None
    if not 0 <= rank < size or local < 0:
        raise ConfigError(f"RANK={rank} does not lie in a world of WORLD_SIZE={size} processes")
    return World(rank, size, local)


def current() -> World:
    """This process's :class:`World`: that of the joined process group, else a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """Whether this process is rank 0 (always, without a process group)."""
    return current().main


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join the process group torchrun's environment describes for the length of the block and
    yield this rank's device: ``cuda:LOCAL_RANK`` (NCCL) for a CUDA ``device``, the CPU (gloo)
    for a CPU one. Without torchrun it yields ``device`` and starts nothing."""
    world = from_env()
    if world.size == 1 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            gpus = torch.cuda.device_count()
            raise ConfigError(f"LOCAL_RANK={world.local_rank}, but this machine has {gpus} CUDA GPUs: start one process per GPU at most (--nproc-per-node)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"--device {device.type} cannot run under torchrun: use cpu (gloo) or cuda (NCCL)")
    dist.init_process_group(backend, timeout=WAIT, device_id=device if device.type == "cuda" else None)
    try:
        yield device
        # A DistributedDataParallel left for the interpreter's exit to destroy can abort the
        # process ("terminate called without an active exception": 2 of 55 runs of a two-rank
        # gloo script here, 0 of 70 with the wrapper collected first). The block's wrappers are
        # unreachable by now: collect them while the group still stands.
        gc.collect()
        dist.barrier()  # no rank tears its connections down while another still uses them
    finally:
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel when there are several ranks, else ``model``.

    DDP averages the gradients over the ranks after each backward pass and broadcasts rank 0's
    buffers (batch-norm running statistics) before each forward pass; each rank's batch-norm
    layers normalise by the statistics of that rank's part of the batch (SyncBatchNorm, which
    would use the whole batch's, runs on GPUs only).
    """
    if current().size == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's gradient by its sum over the ranks (one flat all-reduce; a
    missing gradient counts as zeros). Nothing without a process group."""
    if current().size == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, chunk in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = chunk.view_as(p).clone()


def total(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over the ranks, differentiably: the backward pass sums each rank's
    gradient of the total and hands it to every rank (``value`` itself without a process group)."""
    if current().size == 1:
        return value
    return _Total.apply(value)


class _Total(torch.autograd.Function):
    """Sum over the ranks; its gradient is the sum of every rank's gradient (d total / d value_r = 1)."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor) -> torch.Tensor:
        out = value.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only, its value (or the :class:`~veilnet.errors.VeilnetError` it
    raised) handed to every rank, which return (or raise) the same."""
    if current().size == 1:
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("value", fn())
        except Exception as exc:
            from veilnet.errors import VeilnetError

            box[0] = ("error", exc if isinstance(exc, VeilnetError) else RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}"))
            dist.broadcast_object_list(box, src=0, device=_collective_device())
            raise
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without a process group)."""
    if current().size == 1:
        return [obj]
    out: list[Any] = [None] * current().size
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: Sequence[float]) -> list[float]:
    """The element-wise sum of ``values`` over the ranks (float64)."""
    if current().size == 1:
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if current().size > 1:
        dist.barrier()


def rank_seed(seed: int) -> int:
    """The seed of this rank's own stream of the run seeded ``seed``: ``seed`` itself on rank 0
    (so one process draws what rank 0 draws), a SHA-256 derived 63-bit seed on the others."""
    rank = current().rank
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(repr((int(seed), "rank", rank)).encode()).digest()[:8], "big") & (2**63 - 1)


__all__ = [
    "ENV",
    "WAIT",
    "World",
    "all_sum",
    "barrier",
    "current",
    "from_env",
    "from_main",
    "gather",
    "is_main",
    "rank_seed",
    "session",
    "sum_gradients",
    "total",
    "wrap",
]
