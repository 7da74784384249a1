"""Dynamic batching: requests that arrive together share one forward pass.

Every request's batch joins a queue. One worker takes the first waiting batch and every batch
queued behind it (those that arrived during the previous pass), then keeps taking batches that
arrive within ``wait_ms`` of it (0, the default: none), as long as the merged batch stays within
``max_images``; it runs the model once on the concatenation (in a worker thread, so the event
loop keeps answering) and hands every request its rows. With ``enabled=False`` every request is
its own forward pass, through the same single worker, which is the baseline batching is measured
against (benchmarks/serve_load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

log = logging.getLogger("veilnet.serve")


@dataclass(frozen=True)
class BatchingConfig:
    """``max_images`` per merged forward pass, ``wait_ms`` a pass waits for more requests after
    the first (0: merge only what is already queued, adding no latency), ``enabled=False`` for
    one pass per request."""

    enabled: bool = True
    max_images: int = 256
    wait_ms: float = 0.0


_Item = tuple[torch.Tensor, "asyncio.Future[torch.Tensor]"]


class DynamicBatcher:
    """``await batcher(x)`` returns ``forward(x)``, computed together with other waiting requests."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], config: BatchingConfig) -> None:
        self.forward = forward
        self.config = config
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="veilnet-forward")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, x: torch.Tensor) -> torch.Tensor:
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        await self._queue.put((x, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        held: _Item | None = None  # a request that did not fit into the previous pass
        while True:
            first = held if held is not None else await self._queue.get()
            held = None
            group = [first]
            if self.config.enabled:
                held = await self._gather(group, loop.time() + self.config.wait_ms / 1000.0)
            live = [(x, f) for x, f in group if not f.done()]  # drop requests whose client left
            if not live:
                continue
            log.debug("forward pass: %d requests, %d items", len(live), sum(x.shape[0] for x, _ in live))
            try:
                out = await loop.run_in_executor(self._executor, self.forward, torch.cat([x for x, _ in live]))
            except Exception as exc:  # handed to each request; the app answers 500 without details
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            start = 0
            for x, f in live:
                if not f.done():
                    f.set_result(out[start : start + x.shape[0]])
                start += x.shape[0]

    async def _gather(self, group: list[_Item], deadline: float) -> _Item | None:
        """Add waiting requests to ``group`` until ``deadline`` or ``max_images``; return the one
        that would overflow it (it starts the next pass)."""
        loop = asyncio.get_running_loop()
        size = group[0][0].shape[0]
        while size < self.config.max_images:
            timeout = deadline - loop.time()
            try:
                item = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                return None
            if size + item[0].shape[0] > self.config.max_images:
                return item
            group.append(item)
            size += item[0].shape[0]
        return None


__all__ = ["BatchingConfig"]
