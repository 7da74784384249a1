"""Gaussian randomised smoothing: a classifier with a certified L2 radius.

Paper: Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized Smoothing"
(ICML 2019). From a base classifier f, the smoothed classifier is

    g(x) = argmax_c P(f(x + ε) = c),    ε ~ N(0, σ² I)                          (section 3, Eq. 1)

with the noise added in [0, 1] pixel space (σ is a pixel-space standard deviation; the noisy
points are not clipped to [0, 1], as in the paper). If the top class c_A has probability at least
p_A and every other class at most p_B = 1 − p_A, g is constant on the L2 ball of radius
R = σ Φ⁻¹(p_A) around x (Theorem 1 with p_B = 1 − p_A). g cannot be evaluated exactly, so section
3.2 estimates it by Monte Carlo:

* PREDICT (Algorithm, "Prediction"): n noisy copies; with n_A, n_B the counts of the two most
  frequent classes, return c_A if the two-sided binomial test of n_A successes in n_A + n_B
  trials at p = 1/2 has p-value ≤ α, else abstain. The answer differs from g(x) with probability
  at most α (Proposition 1).
* CERTIFY (Algorithm, "Certification"): n₀ noisy copies select ĉ_A (the most frequent class); n
  fresh copies count n_A = #{f(x + ε) = ĉ_A}; p_A is the one-sided (1 − α) Clopper–Pearson lower
  bound on that binomial proportion, p_A = Beta⁻¹(α; n_A, n − n_A + 1); if p_A > 1/2 return ĉ_A
  with radius R = σ Φ⁻¹(p_A), else abstain. A returned (ĉ_A, R) is wrong — g is not ĉ_A on the
  whole ball — with probability at most α (Proposition 2).

**Randomness is per image.** Image i of a call draws its noise from its own generator, seeded from
``(seed, stage, i)`` (stage: selection, estimation or prediction), as uniform numbers on the CPU
turned into Gaussians on the model's device by the Box–Muller transform. torch's CPU uniform
stream does not depend on how it is cut into draws, so an image's counts are the same for every
``batch`` size, whichever other images it is certified with, and on CPU and CUDA alike (up to the
float rounding of the model).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from veilnet.checks import is_int, is_number
from veilnet.errors import ConfigError, ShapeError
from veilnet.metrics import as_float, eval_mode
from veilnet.progress import bar
from veilnet.robust.attacks.base import derive_seed, standard_normal

#: The label returned where PREDICT or CERTIFY abstains.
ABSTAIN = -1


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer for a batch of images (tensors on the CPU, one entry per image).

    ``labels``: ĉ_A, or :data:`ABSTAIN`; ``radii``: R = σ Φ⁻¹(p_A) (0 where abstained);
    ``p_lower``: the Clopper–Pearson lower bound p_A; ``counts``: n_A among the n estimation samples.
    """

    labels: torch.Tensor
    radii: torch.Tensor
    p_lower: torch.Tensor
    counts: torch.Tensor


class Smoothing:
    """The smoothed classifier g of a base classifier under Gaussian noise N(0, σ² I) in pixel space.

    Arguments:
        model: base classifier f taking ``N×C×H×W`` [0, 1] pixels to logits (its argmax is f's class).
        sigma: σ, the noise's standard deviation in [0, 1] pixel space.
        batch: noisy copies of one image per forward pass (memory, not results: see the module docstring).
        device: where the model runs (default: its parameters' device).
        progress: show a tqdm bar over the images.

    Example::

        smoothed = Smoothing(model, sigma=0.25)
        cert = smoothed.certify(images, n0=100, n=10_000, alpha=0.001, seed=0)
        certified = (cert.labels == labels) & (cert.radii >= 0.5)
    """

    def __init__(self, model: nn.Module, sigma: float, *, batch: int = 1000, device: str | torch.device | None = None, progress: bool = False) -> None:
        if not is_number(sigma) or not 0 < sigma < math.inf:
            raise ConfigError(f"sigma must be a positive number, got {sigma!r}")
        if not is_int(batch) or batch < 1:
            raise ConfigError(f"batch must be a positive integer, got {batch!r}")
        self.model = model
        self.sigma = float(sigma)
        self.batch = batch
        self.device = torch.device(device) if device is not None else next((p.device for p in model.parameters()), torch.device("cpu"))
        self.progress = progress

    def __repr__(self) -> str:
        return f"Smoothing(sigma={self.sigma}, batch={self.batch})"

    @torch.no_grad()
    def sample_counts(self, image: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """SAMPLEUNDERNOISE: ``counts[c] = #{j ≤ num : f(x + ε_j) = c}`` for one image ``C×H×W``,
        the ε_j drawn from ``generator`` (a CPU generator), ``batch`` copies per forward pass."""
        x = as_float(image[None]).to(self.device)
        counts = None
        for size in _chunks(num, self.batch):
            noise = gaussian(generator, size, x.shape[1:], self.device)
            logits = self.model(x + self.sigma * noise)
            if counts is None:
                counts = torch.zeros(logits.shape[1], dtype=torch.long, device=self.device)
            counts += torch.bincount(logits.argmax(1), minlength=counts.numel())
        assert counts is not None
        return counts.cpu()

    def predict(self, images: torch.Tensor, n: int, alpha: float = 0.001, *, seed: int = 0) -> torch.Tensor:
        """PREDICT for each image of ``images`` (``N×C×H×W``): its label, or :data:`ABSTAIN`."""
        from scipy.stats import binomtest

        check_counts(n=n)
        check_alpha(alpha)
        labels = []
        with eval_mode(self.model):
            for i, image in self._images(images, "predict"):
                counts = self.sample_counts(image, n, _generator(seed, "prediction", i))
                top = counts.topk(2)
                n_a, n_b = int(top.values[0]), int(top.values[1])
                labels.append(int(top.indices[0]) if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha else ABSTAIN)
        return torch.tensor(labels, dtype=torch.long)

    def certify(self, images: torch.Tensor, n0: int, n: int, alpha: float = 0.001, *, seed: int = 0) -> Certificate:
        """CERTIFY for each image of ``images`` (``N×C×H×W``); see the module docstring."""
        from scipy.stats import norm

        check_counts(n0=n0, n=n)
        check_alpha(alpha)
        labels, radii, bounds, hits = [], [], [], []
        with eval_mode(self.model):
            for i, image in self._images(images, "certify"):
                guess = int(self.sample_counts(image, n0, _generator(seed, "selection", i)).argmax())
                n_a = int(self.sample_counts(image, n, _generator(seed, "estimation", i))[guess])
                p_a = clopper_pearson_lower(n_a, n, alpha)
                certified = p_a > 0.5
                labels.append(guess if certified else ABSTAIN)
                radii.append(self.sigma * float(norm.ppf(p_a)) if certified else 0.0)
                bounds.append(p_a)
                hits.append(n_a)
        return Certificate(
            torch.tensor(labels, dtype=torch.long),
            torch.tensor(radii, dtype=torch.float64),
            torch.tensor(bounds, dtype=torch.float64),
            torch.tensor(hits, dtype=torch.long),
        )

    def _images(self, images: torch.Tensor, what: str) -> Iterator[tuple[int, torch.Tensor]]:
        if images.ndim != 4:
            raise ShapeError(f"expected images of shape N×C×H×W, got shape {tuple(images.shape)}")
        return enumerate(bar(images, desc=f"randomised smoothing σ={self.sigma:g}: {what}", unit="image", enabled=self.progress))


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """The one-sided (1 − α) Clopper–Pearson lower confidence bound on a binomial proportion:
    ``Beta⁻¹(α; k, n − k + 1)`` for k ≥ 1 successes in n trials, 0 for k = 0
    (Clopper and Pearson 1934; CERTIFY's LOWERCONFBOUND in Cohen et al. 2019, section 3.2)."""
    from scipy.stats import beta

    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def gaussian(generator: torch.Generator, num: int, shape: torch.Size | tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """``num×shape`` standard normal numbers from the CPU ``generator``: its uniform numbers, drawn
    on the CPU, through the Box–Muller transform (:func:`~veilnet.robust.attacks.base.standard_normal`)
    on ``device``."""
    size = math.prod(shape)
    uniform = torch.rand(num, 2, (size + 1) // 2, generator=generator).to(device)
    return standard_normal(uniform, size).reshape(num, *shape)


def _generator(seed: int, stage: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, "smoothing", stage, index))


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def check_counts(**counts: int) -> None:
    """A :class:`ConfigError` naming the first of ``counts`` (name=value) that is not a positive integer."""
    for name, value in counts.items():
        if not is_int(value) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def check_alpha(alpha: float) -> None:
    """A :class:`ConfigError` unless 0 < ``alpha`` < 1."""
    if not is_number(alpha) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")


__all__ = ["ABSTAIN", "Certificate", "Smoothing", "clopper_pearson_lower", "gaussian"]
