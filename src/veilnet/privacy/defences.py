"""What a defence gives the privacy benchmark: one :class:`Row` per setting of its knob.

A *defence* (a method, or a standard split-inference defence packaged as a method) is a
:class:`Defence`: a name, the knob that trades accuracy for privacy, the knob's default sweep and
``build(value, setup) -> Row``. A method package lists its defences in its
:class:`veilnet.plugins.Method` (``defences={"noise": "veilnet.complex.privacy"}``: a module whose
``DEFENCES`` maps each name to its :class:`Defence`), so :func:`veilnet.privacy.bench.run` finds a
row for every registered method without importing any by name.

A :class:`Row` is one defence at one knob value, trained for the task. The deployment it models is
the split one every method here shares: the **device** (the image owner) computes what it sends
(:meth:`Row.send`, its secrets drawn from a generator), the **server** computes on it
(:meth:`Row.serve`) and the device turns the server's answer into logits (:meth:`Row.receive`).
The benchmark times the device's and the server's parts, scores the logits on the task and hands
what the server saw to the same attacks for every row:

* the learned inverter — the U-Net of Xiang et al., "Interpretable Complex-Valued Neural Networks
  for Privacy Protection" (ICLR 2020), section 5.1, trained on what the attacker makes of its own
  images, :meth:`Row.observe` (the device simulated with the attacker's own secrets);
* the optimisation inversion through :attr:`Row.encoder`, where the row releases the function
  whose output the server sees (None: it is keyed or otherwise secret);
* property inference of a hidden attribute the task does not need, from the same features;

plus the row's own attacks (:meth:`Row.attacks`: angle recovery for complex features, key
recovery for keyed images), each scored by :meth:`AttackContext.score`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from veilnet.checks import is_int, is_number
from veilnet.data import ImageSplit
from veilnet.errors import ConfigError
from veilnet.report import Result

#: Architectures the split-network rows are built on: the zoo's ``split-ARCH`` / ``complex-ARCH``.
ARCHS = ("lenet", "resnet20-alpha")


@dataclass(frozen=True)
class Budget(Result):
    """The budget every row gets, so that the rows compare: the task's training (``train_images``
    of the train split, balanced over the classes; ``epochs``, ``batch_size``, ``lr``), the victim's
    images (``victim_images`` of the test split — the attacks' targets — and ``test_images`` for
    the accuracy, a superset), the attacker's (``attacker_images`` of the train split; every
    inverter and property classifier ``attack_epochs``, the U-Net ``unet_width`` wide, the
    optimisation inversion ``optimisation_steps`` Adam steps), the architecture of the split rows
    (``arch``, ``width``) and the ``seed`` of every draw that is not a victim's secret key."""

    arch: str = "lenet"
    width: float = 1.0
    train_images: int = 2000
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    test_images: int = 1000
    victim_images: int = 200
    attacker_images: int = 1000
    attack_epochs: int = 10
    unet_width: int = 16
    optimisation_steps: int = 200
    timing_images: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHS)}")
        for name, minimum in (
            ("train_images", 2),
            ("epochs", 1),
            ("batch_size", 2),
            ("test_images", 2),
            ("victim_images", 2),
            ("attacker_images", 2),
            ("attack_epochs", 1),
            ("unet_width", 1),
            ("optimisation_steps", 0),
            ("timing_images", 1),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < minimum:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}")
        for name in ("width", "lr"):
            value = getattr(self, name)
            if not is_number(value) or not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.victim_images > self.test_images:
            raise ConfigError(f"victim-images ({self.victim_images}) must not exceed test-images ({self.test_images}): the victims are the first test images")


@dataclass(frozen=True)
class Setup:
    """What :meth:`Defence.build` gets: the budget, the images' shape ``(C, H, W)``, the task's
    classes (``num_classes``, the reduced task's), the torch device and whether to draw progress."""

    budget: Budget
    image_shape: tuple[int, int, int]
    num_classes: int
    device: torch.device
    progress: bool = False

    def split_model(self, kind: str = "split", **kwargs: Any) -> nn.Module:
        """The zoo's ``KIND-ARCH`` network for this setup (``split-lenet``, ``complex-resnet20-alpha``,
        …): the budget's architecture and width, the task's classes, the images' channels (and
        size, for LeNet), with ``kwargs`` (e.g. ``noise=0.5``)."""
        from veilnet import models

        c, h, _ = self.image_shape
        size = {"image_size": h} if self.budget.arch == "lenet" else {}
        return models.create(f"{kind}-{self.budget.arch}", num_classes=self.num_classes, in_channels=c, width=self.budget.width, **size, **kwargs)

    def train(self, model: nn.Module, train: ImageSplit, penalty: Callable[[torch.Tensor], torch.Tensor] | None = None, **options: Any) -> dict[str, float]:
        """Train ``model`` for the task the way every real row is trained — SGD with momentum at
        the budget's ``lr``, cosine schedule, random crops and flips, ``epochs`` epochs of
        ``batch_size`` — adding ``penalty(x)`` to each batch's cross-entropy when given
        (:class:`veilnet.training.ClassifierStep`). ``options`` replace fields of that
        :class:`~veilnet.training.TrainConfig` for a model that does not train under SGD (a ViT:
        AdamW with a warm-up); the row's docstring says so. Returns the last epoch's train accuracy."""
        from veilnet.training import TrainConfig, train_epochs

        b = self.budget
        config = TrainConfig(**{"epochs": b.epochs, "batch_size": b.batch_size, "lr": b.lr, "seed": b.seed, **options})
        history = train_epochs(model, train, config, device=self.device, progress=self.progress, penalty=penalty)
        return {"train_accuracy": float(history[-1]["train_accuracy"])}


@dataclass
class AttackContext:
    """What :meth:`Row.attacks` gets: the attacker's own images (``attacker``, labelled with the
    task's labels) and the victim's (``victim``), what the server saw of the victim's images
    (``sent``, from :meth:`Row.send`), the budget, the device and ``score(name, described,
    reconstructions)`` that turns the victim's reconstructions into the row's
    :class:`~veilnet.attacks.inversion.InversionResult` (beside the attacker's mean image)."""

    attacker: ImageSplit
    victim: ImageSplit
    sent: torch.Tensor
    budget: Budget
    device: torch.device
    score: Callable[..., Any]
    progress: bool = False


class Row(ABC):
    """One defence at one knob value (see the module docstring). Subclasses set :attr:`sends`
    (what the server sees, in words) and, where the device's function is public, :attr:`encoder`."""

    #: What the server receives, in a few words ("the encoder's feature g(I)", "E_K(I)").
    sends: str = ""
    #: The released function whose output the server sees (noise and dropout aside), for the
    #: optimisation inversion; None where it depends on a secret.
    encoder: nn.Module | None = None

    @abstractmethod
    def fit(self, train: ImageSplit) -> dict[str, float]:
        """Train for the task on ``train`` (its labels are the task's); returns figures worth
        recording (e.g. the final train accuracy), or an empty dict."""

    @abstractmethod
    def send(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Any]:
        """The device's first step on ``images`` (``N×C×H×W`` floats in [0, 1]): what it sends the
        server, and the state it keeps for :meth:`receive` (its secrets, e.g. θ). Secrets are
        drawn from ``generator`` (or from the OS's CSPRNG where the method demands it)."""

    @abstractmethod
    def serve(self, sent: torch.Tensor) -> torch.Tensor:
        """The server's computation on what it received (it holds no secret)."""

    def receive(self, answer: torch.Tensor, state: Any) -> torch.Tensor:
        """The device's last step: the server's answer → logits (``N×num_classes``). Default: the
        answer is the logits."""
        return answer

    def observe(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What the attacker makes of its own ``images`` to train its attacks on: by default what
        :meth:`send` sends with the attacker's own secrets (drawn from ``generator``)."""
        return self.send(images, generator)[0]

    def attacks(self, context: AttackContext) -> list[Any]:
        """The row's own attacks beyond the common ones, each an
        :class:`~veilnet.attacks.inversion.InversionResult` from ``context.score``. Default: none."""
        return []

    def eval(self) -> Row:
        """Put every module of the row in evaluation mode (the default finds them as attributes)."""
        for value in vars(self).values():
            if isinstance(value, nn.Module):
                value.eval()
        return self


class SplitRow(Row):
    """A real split network as a row — the zoo's ``split-*`` (:meth:`Setup.split_model`): encoder g,
    processor Φ, decoder d, and between g and what leaves the device the defence's layer
    ``net.noise``. ``send`` = :meth:`release` of ``g(I)`` with the device's draws, ``serve`` = Φ,
    ``receive`` = d; ``fit`` trains the whole network for the task (the layer active); the released
    encoder is g. A defence on the feature overrides :meth:`release`."""

    def __init__(self, net: nn.Module, setup: Setup, sends: str) -> None:
        self.net, self.setup, self.sends = net.to(setup.device), setup, sends
        self.encoder = self.net.encoder

    def release(self, a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What the device does to the feature ``a = g(I)`` before sending it (default: nothing)."""
        return a

    def fit(self, train: ImageSplit) -> dict[str, float]:
        return self.setup.train(self.net, train)

    @torch.no_grad()
    def send(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Any]:
        return self.release(self.encoder(images.to(self.setup.device)), generator), None

    @torch.no_grad()
    def serve(self, sent: torch.Tensor) -> torch.Tensor:
        return self.net.processor(sent.to(self.setup.device))

    @torch.no_grad()
    def receive(self, answer: torch.Tensor, state: Any) -> torch.Tensor:
        return self.net.decoder(answer)


@dataclass(frozen=True)
class Defence:
    """A defence the benchmark sweeps: ``name`` (a row family: ``noise``, ``complex``, …), the
    ``method`` that registers it, the ``knob`` and its default ``values`` (None: a defence without
    a knob, one row), ``build(value, setup) -> Row``, a one-line ``describe`` and ``reference`` (the
    paper it follows, by title and section); ``value_names`` names knob values that stand for a
    choice (``{0: "permutation"}``) in the rows' labels. ``reference_row``: the unprotected network that every
    row's cost is measured against (exactly one registered defence sets it)."""

    name: str
    method: str
    build: Callable[[float | None, Setup], Row]
    knob: str = ""
    values: Sequence[float] = field(default_factory=tuple)
    describe: str = ""
    reference: str = ""
    reference_row: bool = False
    value_names: Mapping[float, str] = field(default_factory=dict)

    def settings(self, values: Sequence[float] | None = None) -> list[float | None]:
        """The knob values to run: ``values`` if given (a defence without a knob takes none), else the defaults."""
        if not self.knob:
            if values:
                raise ConfigError(f"defence {self.name} has no knob; it takes no values")
            return [None]
        chosen = list(values) if values else list(self.values)
        if not chosen:
            raise ConfigError(f"defence {self.name} needs values of its knob {self.knob}")
        return chosen

    def label(self, value: float | None) -> str:
        """The row's label: ``name`` or ``name knob=value``."""
        if value is None:
            return self.name
        return f"{self.name} {self.knob}={self.value_names.get(value, f'{value:g}')}"


__all__ = ["ARCHS", "AttackContext", "Budget", "Defence", "Row", "Setup", "SplitRow"]
