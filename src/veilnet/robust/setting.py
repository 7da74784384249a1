"""What ``evaluate`` and ``sweep`` share — the attack budget, the defence, the draws of its
randomness, the seed and the device — as one dataclass, and the command-line options built from
it. Importing this module does not import torch (``veilnet --help`` stays fast)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from veilnet.checks import check_budget, check_int, is_int, is_number
from veilnet.cli import finite_float, seed
from veilnet.errors import ConfigError

#: The paper's L∞ budget ("Bandlimiting Neural Networks Against Adversarial Attacks", section 4.1
#: and Table 1): 8/255 in [0, 1] pixel space.
EPS = 8 / 255
SPACES = ("normalized", "pixel")
#: How the defence's random directions behave while an adaptive attack runs (see :class:`Setting`).
RANDOMNESS = ("fresh", "fixed")


@dataclass(frozen=True)
class Setting:
    """The parameters shared by :func:`~veilnet.robust.evaluation.evaluate` and
    :func:`~veilnet.robust.evaluation.sweep`; each field's ``metadata`` holds its ``--option``'s help.

    A result that holds it (``Evaluation``, ``Sweep``) writes it as a JSON object and reads it
    back (:mod:`veilnet.report`). ``draws``: every accuracy of the defended model is averaged over this many independent draws
    of post-averaging's random directions (its spread is reported beside the mean).

    ``randomness`` (adaptive attacks only): ``"fresh"`` redraws the directions at every query of
    the attack and judges its examples with further fresh draws (the setting of the Square
    attack's authors, and of a deployment that draws anew per request); ``"fixed"`` makes each
    draw of the defence deterministic, one seeded set of K directions shared by every image and
    query, and runs the attack once per draw against that draw's directions, judged by the same
    ones (a deployment with a fixed seed). The paper protocol and the sweeps always use fresh
    directions.
    """

    eps: float = field(default=EPS, metadata={"help": "L∞ budget in pixels, a number or a fraction like 8/255 (default: 8/255)", "type": finite_float})
    directions: int = field(default=15, metadata={"help": "post-averaging directions K (default: 15)"})
    radius: float = field(default=6.0, metadata={"help": "post-averaging radius r (default: 6)", "type": finite_float})
    space: str = field(default="normalized", metadata={"help": "space the radius is measured in (default: normalized)", "choices": SPACES})
    draws: int = field(default=5, metadata={"help": "draws of the defence's random directions each defended accuracy is averaged over (default: 5)"})
    randomness: str = field(
        default="fresh",
        metadata={
            "help": "the defence's directions while an adaptive attack runs: fresh at every query, or fixed "
            "(one seeded set per draw, the attack run once per draw against it) (default: fresh)",
            "choices": RANDOMNESS,
        },
    )
    seed: int | None = field(
        default=None, metadata={"help": "seed of the run: the defence's draws and the attacks' randomness (default: drawn and recorded)", "type": seed}
    )
    device: str = field(default="cpu", metadata={"help": "torch device, e.g. cpu or cuda (default: cpu)"})

    def __post_init__(self) -> None:
        check_budget("eps", self.eps, norm="linf")
        for name in ("directions", "draws"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not is_number(self.radius) or not 0 < self.radius < float("inf"):
            raise ConfigError(f"radius must be a positive number, got {self.radius!r}")
        if self.space not in SPACES:
            raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {self.space!r}")
        if self.randomness not in RANDOMNESS:
            raise ConfigError(f"randomness must be one of {', '.join(RANDOMNESS)}, got {self.randomness!r}")
        if self.seed is not None:
            check_int("seed", self.seed)

    def replace(self, **changes: Any) -> Setting:
        return dataclasses.replace(self, **changes)

    @property
    def defence(self) -> dict[str, Any]:
        """The post-averaging parameters, as :class:`~veilnet.robust.PostAveraging` takes them."""
        return {"directions": self.directions, "radius": self.radius, "space": self.space}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--option`` per field (``--eps``, ``--directions``, ...), from the field's type and metadata."""
        for f in dataclasses.fields(cls):
            kwargs: dict[str, Any] = {"default": f.default, "help": f.metadata["help"], "dest": f.name}
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            kwargs["type"] = f.metadata.get("type") or {"int": int, "float": float, "int | None": int, "str": str}[str(f.type)]
            parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Setting:
        """The setting the options of :meth:`add_arguments` were parsed into."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


__all__ = ["Setting"]
