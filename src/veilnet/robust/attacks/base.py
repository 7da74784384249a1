"""What every evasion attack shares: eval mode, device, batching, budgets, seeds and success.

An attack is a callable object on a classifier that takes [0, 1] pixels (docs/architecture.md,
"Pixels"). Calling it returns the adversarial images and a per-sample success mask (Foolbox 3
style); :meth:`Attack.run` takes a list of L∞ budgets. Budget-bound attacks (FGSM, PGD, EOT-PGD,
Square) run once per budget; minimisation attacks (DeepFool, C&W) run once and their result is
projected onto each budget's L∞ ball, success being judged on the projected image (as Foolbox
does). With ``search_steps = S > 0`` a budget-bound attack looks, per image, for the smallest
budget that fools the model: it attacks at ε, then bisects [0, ε] S times for the images it
fooled (each probe at the midpoint of the image's own interval), and returns each image's result
at the smallest successful budget found, within ε/2^S of the smallest one. Foolbox 2, which the
post-averaging paper used "in their default settings", searched the same way (binary search on
ε for its iterative attacks, an ascending ε grid for FGSM); with :class:`~.pgd.PGD`'s
``early_stop`` the examples lie just past the decision boundary, as the paper's did. S = 0
attacks at ε only. A sample counts as a success when the model's prediction on the returned
image differs from its label; an image the model already gets wrong is a success with no change.

**Randomness is per sample.** Image i of a run (its index in the images given to :meth:`run`)
draws the attack's random numbers (random starts, Square's proposals) from its own generator,
seeded from ``(seed, i)``, and a model that can take per-sample generators (a randomised defence
such as :class:`~veilnet.robust.PostAveraging`, see :meth:`Attack.query`) draws its randomness
for that image from a second one. So an image's adversarial does not depend on the batch size
or on the other images of the batch, for every attack, against a deterministic model and against
such a defence alike (up to float rounding, which may differ between batch sizes).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.checks import check_int, is_int, is_number
from veilnet.errors import ConfigError, ShapeError
from veilnet.metrics import as_float, eval_mode
from veilnet.models.batching import tuned_batch_size
from veilnet.progress import bar
from veilnet.robust.setting import EPS  # the post-averaging paper's L∞ budget, 8/255


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed for the stream named ``labels`` of the run seeded ``seed`` (SHA-256 of both):
    different names give independent streams, the same names the same one."""
    digest = hashlib.sha256(repr((int(seed), *map(str, labels))).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class Streams:
    """One generator per sample for the attack, and one per sample for the model it queries.

    Index it like the batch (a boolean mask, long indices or a slice) to follow a subset of the
    samples; :meth:`rand` draws each row from its own sample's generator.
    """

    def __init__(self, attack: list[torch.Generator], model: list[torch.Generator]) -> None:
        self.attack = attack
        self.model = model

    @classmethod
    def for_samples(cls, seed: int, indices: range) -> Streams:
        """The generators of samples ``indices`` of the run seeded ``seed``."""

        def make(*labels: object) -> torch.Generator:
            return torch.Generator().manual_seed(derive_seed(seed, *labels))

        return cls([make("attack", i) for i in indices], [make("model", i) for i in indices])

    def __len__(self) -> int:
        return len(self.attack)

    def __getitem__(self, index: torch.Tensor | slice) -> Streams:
        if isinstance(index, slice):
            return Streams(self.attack[index], self.model[index])
        index = torch.as_tensor(index).cpu()
        rows = index.nonzero()[:, 0].tolist() if index.dtype == torch.bool else index.flatten().tolist()
        return Streams([self.attack[i] for i in rows], [self.model[i] for i in rows])

    def rand(self, *shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform [0, 1) numbers, ``len(self)×shape``, row i from sample i's generator (drawn on the CPU)."""
        if not self.attack:
            return torch.empty(0, *shape, device=device)
        return torch.stack([torch.rand(*shape, generator=g) for g in self.attack]).to(device)

    def randn(self, *shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Standard normal numbers, ``len(self)×shape``, row i from sample i's generator
        (:func:`standard_normal` of its uniform numbers)."""
        size = math.prod(shape)
        return standard_normal(self.rand(2, (size + 1) // 2, device=device), size).view(len(self), *shape)


class Attack:
    """Base class: subclasses implement :meth:`perturb` on one batch on the model's device.

    Arguments:
        model: classifier taking ``N×C×H×W`` pixels in [0, 1] to logits. A model readied by
            :func:`veilnet.models.prepare` runs compiled in the gradient loop (its forward and
            backward passes; batches of other sizes, such as the images not fooled yet, in
            chunks padded to its one batch size), as ``veilnet robust evaluate`` does by default.
        eps: L∞ budget in pixel space (None: unbounded, minimisation attacks only).
        batch_size: images attacked together; does not change the results (see the module docstring).
        device: where to run (default: the model's parameters' device).
        seed: seed of the attack's own randomness and of the per-sample randomness it hands to the
            model (random starts, Square's proposals, a defence's draws); None draws one per run.
        progress: show a bar of the model's queries (:meth:`max_queries` per batch and budget, so
            that a run of one batch moves too), named after the attack (True) or by the string given.
        search_steps: S > 0 bisects [0, ε] S times for each image's smallest successful budget
            (budget-bound attacks only); 0 (default) attacks at ε.
    """

    #: Short name used in results and on the command line.
    name: ClassVar[str] = "attack"
    #: True for attacks that search for the smallest perturbation and ignore ``eps`` while searching.
    minimization: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = EPS,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        seed: int | None = None,
        progress: bool | str = False,
        search_steps: int = 0,
    ) -> None:
        if eps is None and not self.minimization:
            raise ConfigError(f"{self.name} needs an L∞ budget eps")
        if eps is not None and not (is_number(eps) and eps >= 0):
            raise ConfigError(f"eps must be a non-negative number, got {eps!r}")
        if search_steps and self.minimization:
            raise ConfigError(f"search_steps must be 0 for a minimisation attack, got {search_steps} for {self.name}")
        self.model = model
        self.eps = eps
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.progress = progress
        self._bar: Any = None
        self._ticks = 0  # queries the bar may still count for the current batch
        self.configure({"batch_size": 1, "search_steps": 0}, batch_size=batch_size, search_steps=search_steps)
        if seed is not None:
            check_int(f"{self.name}: seed", seed)
        self.seed = seed

    def configure(self, minimum: dict[str, float], *, choices: dict[str, Sequence[str]] | None = None, **settings: Any) -> None:
        """Check the attack's own ``settings`` and keep them as attributes.

        Each setting must have the type of its default in the class's signature (an int where the
        default is an int, a number where it is a float, a bool, a string), be at least its bound in
        ``minimum`` (a float bound of 0 means strictly positive) and one of its ``choices``; else a
        :class:`ConfigError` names the setting.
        """
        defaults = _defaults(type(self))
        for key, value in settings.items():
            default = defaults.get(key)
            kind = type(default)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = is_int(value)
            elif isinstance(default, float):
                ok = is_number(value)
                value = float(value) if ok else value
            else:
                ok = default is None or isinstance(value, kind)
            if not ok:
                raise ConfigError(f"{self.name}: {key} must be {_kind_name(default)}, got {value!r}")
            bound = minimum.get(key)
            if bound is not None and (value <= bound if isinstance(bound, float) else value < bound):
                relation = "positive" if isinstance(bound, float) and bound == 0 else f"{'>' if isinstance(bound, float) else '>='} {bound}"
                raise ConfigError(f"{self.name}: {key} must be {relation}, got {value!r}")
            allowed = (choices or {}).get(key)
            if allowed is not None and value not in allowed:
                raise ConfigError(f"{self.name}: {key} must be one of {', '.join(allowed)}, got {value!r}")
            setattr(self, key, value)

    @classmethod
    def setting_names(cls) -> list[str]:
        """Names accepted as keyword settings by this attack (its own and the base class's)."""
        return [name for name in _defaults(cls) if name not in ("model", "eps")]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, seed={self.seed})"

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attack ``images`` (``N×C×H×W``) with ``labels`` (``N``) at ``self.eps``: ``(adversarials, success)``."""
        return self.run(images, labels, [self.eps])[0]

    def run(self, images: torch.Tensor, labels: torch.Tensor, epsilons: Sequence[float | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One ``(adversarials, success)`` pair per budget in ``epsilons``, on the CPU."""
        images = as_float(images)
        labels = torch.as_tensor(labels).long()
        if labels.shape != images.shape[:1]:
            raise ShapeError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        if not epsilons:
            raise ConfigError("run needs at least one budget")
        if any(e is None for e in epsilons) and not self.minimization:
            raise ConfigError(f"{self.name} needs a finite L∞ budget")
        seed = secrets.randbits(63) if self.seed is None else self.seed
        advs: list[list[torch.Tensor]] = [[] for _ in epsilons]
        wins: list[list[torch.Tensor]] = [[] for _ in epsilons]
        with eval_mode(self.model), frozen(self.model):
            size = self.work_batch(images)
            batches = range(0, images.shape[0], size)
            # Per batch: one perturb (a minimisation attack) or 1 + search_steps per budget, each
            # judged by a check of its result.
            per_batch = (1 if self.minimization else len(epsilons) * (1 + self.search_steps)) * self.max_judged_queries()
            name = self.progress if isinstance(self.progress, str) else self.name
            with bar(desc=name, total=len(batches) * per_batch, unit="query", enabled=bool(self.progress)) as self._bar:
                for start in batches:
                    self._ticks = per_batch
                    x = images[start : start + size].to(self.device)
                    y = labels[start : start + size].to(self.device)
                    streams = Streams.for_samples(seed, range(start, start + x.shape[0]))
                    raw = self.perturb(x, y, None, streams) if self.minimization else None
                    for i, eps in enumerate(epsilons):
                        if raw is None:
                            adv, win = self._smallest_budget(x, y, float(eps), streams)
                        else:
                            adv = project(raw, x, eps)
                            win = self.is_adversarial(adv, y, streams)
                        advs[i].append(adv.detach().cpu())
                        wins[i].append(win.cpu())
                    self._bar.update(self._ticks)  # the queries an early stop saved
                    self._ticks = 0
        if not images.shape[0]:
            return [(images.clone(), torch.zeros(0, dtype=torch.bool)) for _ in epsilons]
        return [(torch.cat(a), torch.cat(w)) for a, w in zip(advs, wins)]

    def work_batch(self, images: torch.Tensor) -> int:
        """The images attacked together: ``batch_size``, or fewer where the model runs faster per
        image on fewer. For a model that batches its own work (a randomised defence with a
        ``sample_generators`` hook, such as :class:`~veilnet.robust.PostAveraging`, which runs
        each image's points in batches it measured) that is ``batch_size``; for any other, the
        batch size :func:`~veilnet.models.batching.tuned_batch_size` measured fastest per image
        for the model's forward pass with gradients, when smaller (on a CPU, smaller batches keep
        the activations in the core's cache; benchmarks/robust_speed.py times torchattacks' PGD
        whole and in such batches). The rows of a batch are independent in eval mode, so the
        size changes no result beyond float rounding."""
        if callable(getattr(self.model, "sample_generators", None)) or images.shape[0] <= 1:
            return self.batch_size
        with torch.enable_grad():
            return min(self.batch_size, tuned_batch_size(self.model, images[:1].to(self.device)))

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        """The attack's own arithmetic on one batch: adversarial images in [0, 1].

        ``eps`` holds each image's L∞ budget, shape ``N×1×1×1`` (None for minimisation attacks);
        ``streams`` holds each image's generators (index it with the rows of a subset).
        """
        raise NotImplementedError

    def max_queries(self) -> int:
        """The most calls of :meth:`query` one :meth:`perturb` makes on a batch at this attack's
        settings (the unit of its progress bar; an early stop uses fewer)."""
        return 1

    def max_judged_queries(self) -> int:
        """:meth:`max_queries` and the check of the result (:meth:`perturb_judged`)."""
        return self.max_queries() + 1

    def perturb_judged(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`perturb` and each result's success: one forward pass of the model on the results
        (:meth:`is_adversarial`). Attacks that end on such a pass of their own return its verdict
        instead of paying for a second one (:class:`Restarted`)."""
        adv = self.perturb(images, labels, eps, streams)
        return adv, self.is_adversarial(adv, labels, streams)

    def _smallest_budget(self, images: torch.Tensor, labels: torch.Tensor, eps: float, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`perturb_judged` at ε, then ``search_steps`` rounds of per-image bisection of [0, ε]:
        the adversarials and their success."""
        hi = torch.full((images.shape[0], 1, 1, 1), eps, device=images.device)
        adv, win = self.perturb_judged(images, labels, hi, streams)
        if not self.search_steps:
            return adv, win
        idx = win.nonzero()[:, 0]
        if not len(idx):
            return adv, win
        x, y, best, sub = images[idx], labels[idx], adv[idx], streams[idx]
        lo, hi = torch.zeros_like(hi[idx]), hi[idx]
        for _ in range(self.search_steps):
            mid = (lo + hi) / 2
            attempt, won = self.perturb_judged(x, y, mid, sub)
            best[won] = attempt[won]
            hi = torch.where(won[:, None, None, None], mid, hi)
            lo = torch.where(won[:, None, None, None], lo, mid)
        adv[idx] = best  # each kept result was judged a success when it was made
        return adv, win

    # -- helpers for the subclasses -------------------------------------------------------------

    def query(self, images: torch.Tensor, streams: Streams) -> torch.Tensor:
        """The model's logits on ``images``; a model with a ``sample_generators(generators)``
        context manager (a randomised defence) draws row r's randomness from sample r's model
        generator (rows beyond ``len(streams)`` cycle through them, for repeated batches)."""
        if self._ticks:
            self._ticks -= 1
            self._bar.update()
        hook = getattr(self.model, "sample_generators", None)
        with hook(streams.model) if callable(hook) else nullcontext():
            return self.model(images)

    def gradient(self, images: torch.Tensor, labels: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """∇ₓ of the summed cross-entropy loss (each sample's gradient is its own loss's), and the logits."""
        x = images.detach().requires_grad_(True)
        logits = self.query(x, streams)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return torch.autograd.grad(loss, x)[0], logits.detach()

    def expected_gradient(
        self, images: torch.Tensor, labels: torch.Tensor, streams: Streams, loss: LossFn, draws: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expectation over Transformation (Athalye, Carlini and Wagner 2018, "Obfuscated gradients
        give a false sense of security", section 4.3): each sample's loss averaged over ``draws``
        draws of the model's randomness, ``L̄(x) = (1/n) Σ_k loss(f_k(x), y)``, and ``∇ₓ L̄``, as one
        batched forward pass (copy k of sample i draws from sample i's model generator after copies
        0..k−1, see :meth:`query`). Returns the gradient, ``L̄`` per sample and the logits averaged
        over the draws. ``loss`` maps ``(logits, labels)`` to one value per row."""
        x = images.detach().requires_grad_(True)
        logits = self.query(x.repeat(draws, 1, 1, 1), streams)
        per_sample = loss(logits, labels.repeat(draws)).view(draws, -1).mean(0)
        grad = torch.autograd.grad(per_sample.sum(), x)[0]
        return grad, per_sample.detach(), logits.detach().view(draws, x.shape[0], -1).mean(0)

    @torch.no_grad()
    def is_adversarial(self, images: torch.Tensor, labels: torch.Tensor, streams: Streams) -> torch.Tensor:
        """True where the model's prediction differs from the label."""
        return self.query(images, streams).argmax(1) != labels

    @torch.no_grad()
    def margin(self, images: torch.Tensor, labels: torch.Tensor, streams: Streams) -> torch.Tensor:
        """``Z_y − max_{j≠y} Z_j`` of the model's logits: negative exactly when the image is misclassified."""
        return label_margin(self.query(images, streams), labels)


class Restarted(Attack):
    """An attack made of up to ``restarts`` attempts (:meth:`attempt`), each later one only on the
    samples not fooled yet; each sample keeps its last attempt's result.

    An attempt returns its results and their success, judged by one forward pass of the model at
    the results (or by a pass the attempt made there anyway): that verdict decides the next
    restart and is the success mask :meth:`~Attack.run` reports, with no second pass.
    """

    restarts: int

    def max_judged_queries(self) -> int:
        """:meth:`max_queries`: it counts each restart's check already."""
        return self.max_queries()

    def attempt(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        """One attempt on one batch: adversarial images in [0, 1] and their success."""
        raise NotImplementedError

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor | None, streams: Streams) -> torch.Tensor:
        assert eps is not None
        return self.perturb_judged(images, labels, eps, streams)[0]

    def perturb_judged(self, images: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        best = images.clone()
        success = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        rows = torch.arange(images.shape[0], device=images.device)  # the samples not fooled yet
        for _ in range(self.restarts):
            adv, win = self.attempt(images[rows], labels[rows], eps[rows], streams[rows])
            best[rows], success[rows] = adv.detach(), win
            rows = rows[~win]
            if not len(rows):
                break
        return best, success


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its parameters' ``requires_grad`` off for the block, then each as it was.
    The attacks differentiate with respect to the images only; a model compiled by
    :func:`veilnet.models.prepare` would otherwise compute the parameters' gradients in every
    backward pass as well (its backward graph is built for every input that requires a gradient)."""
    params = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in params:
            p.requires_grad_(flag)


#: A loss with one value per sample: ``(logits N×K, labels N) -> N``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's cross-entropy loss."""
    return F.cross_entropy(logits, labels, reduction="none")


def label_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``Z_y − max_{j≠y} Z_j`` for each row of ``logits``."""
    real = logits.gather(1, labels[:, None])[:, 0]
    return real - logits.scatter(1, labels[:, None], float("-inf")).amax(1)


def project(adversarials: torch.Tensor, images: torch.Tensor, eps: float | torch.Tensor | None, norm: str = "linf") -> torch.Tensor:
    """Project ``adversarials`` onto the ball of radius ``eps`` around ``images`` — L∞: clip each
    pixel; L2 (``norm="l2"``): scale each perturbation δ by min(1, ε/‖δ‖₂) — then clip into [0, 1]
    (which only shortens δ, as the images lie in [0, 1])."""
    if eps is None:
        return adversarials.clamp(0.0, 1.0)
    if norm == "l2":
        delta = adversarials - images
        length = delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.ndim - 1))
        return (images + delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)).clamp(0.0, 1.0)
    return torch.min(torch.max(adversarials, images - eps), images + eps).clamp(0.0, 1.0)


def standard_normal(uniform: torch.Tensor, size: int) -> torch.Tensor:
    """The Box–Muller transform (Box and Muller 1958, "A note on the generation of random normal
    deviates"): ``uniform`` of shape ``N×2×⌈size/2⌉`` in [0, 1) -> ``N×size`` independent N(0, 1)
    numbers ``√(−2 ln(1 − u₁)) · cos(2π u₂)`` and ``√(−2 ln(1 − u₁)) · sin(2π u₂)``. Built on
    uniform numbers because torch's CPU uniform stream, unlike its normal one, does not depend on
    how it is cut into draws."""
    r = torch.sqrt(-2.0 * torch.log1p(-uniform[:, 0]))
    angle = 2.0 * math.pi * uniform[:, 1]
    return torch.cat([r * torch.cos(angle), r * torch.sin(angle)], dim=1)[:, :size]


def _defaults(cls: type) -> dict[str, Any]:
    """Keyword defaults of ``cls.__init__`` and of the ``__init__`` of every base it passes ``**kwargs`` to."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                out[param.name] = param.default
    return out


def _kind_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return f"a {type(default).__name__}"


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
