"""Progress bars: every long loop of veilnet draws its bar through :func:`bar`.

A bar names what runs (``"robust evaluate 2/6: pgd on the undefended model"``,
``"keyed: accuracy under random wrong keys"``) and counts the smallest unit of work its loop can
report (model queries of an attack, images, keys, training steps), so that a run of one batch
still moves and shows an estimate of the time left. It goes to stderr whenever the caller asks for
progress, on a terminal and into a log alike: on a stream that is not a terminal it is redrawn at
most every :data:`LOG_INTERVAL` seconds, so the log of a day-long run stays short, while its first
line (the name, 0 of the total) appears at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

#: Seconds between redraws of a bar on a stream that is not a terminal (tqdm's 0.1 s on one).
LOG_INTERVAL = 5.0


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    enabled: bool = True,
    **options: Any,
) -> Any:
    """A tqdm bar named ``desc`` over ``iterable`` (or of ``total`` units, advanced with
    ``update``), on stderr; ``enabled=False`` draws nothing. On a terminal a finished bar is
    erased; in a log its last state stays, one line per bar. ``options`` go to tqdm
    (``unit_scale=True`` for bytes)."""
    stream = sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    interval = 0.1 if interactive else LOG_INTERVAL
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, leave=not interactive, file=stream, mininterval=interval, **options)


def message(line: str) -> None:
    """Print ``line`` to stdout without breaking a bar that is being drawn."""
    tqdm.write(line)
