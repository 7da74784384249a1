"""The privacy benchmark: which method hides what, at what cost — every registered defence's rows
on the same victim images, attacked by the same attacker (``veilnet bench privacy``).

* :mod:`veilnet.privacy.defences` — what a defence gives the benchmark (:class:`Defence`, one
  :class:`Row` per knob value) and the budget every row shares;
* :mod:`veilnet.privacy.task` — the reduced task and the hidden attribute it does not need;
* :mod:`veilnet.privacy.bench` — the run: training, accuracy and time, the attacks, resumable;
* :mod:`veilnet.privacy.rendering` — the Markdown table and the privacy–utility plot.

The names below are imported on first use (importing the package imports no torch).
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("defences", "task", "bench", "rendering"))
