"""Random-key attack (ConvMixer paper, Sec. 4.3 and Fig. 5): feed the transformed model images
encrypted with keys drawn at random with the same public parameters, and measure accuracy.

Threat: an unauthorised user who has the transformed model and the public parameters but not the
key. A protected model should stay near chance for every wrong key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from veilnet import metrics
from veilnet.keyed.images import encrypt_images
from veilnet.keyed.schemes import generate_key
from veilnet.report import Result


@dataclass(frozen=True)
class RandomKeysResult(Result):
    """Accuracy of the transformed model on images encrypted with each of ``n_keys`` random
    keys; ``quartiles`` holds min, q1, median, q3, max (the box of Fig. 5); ``seed`` is None
    when the keys came from the OS CSPRNG (key i uses seed ``seed + i`` otherwise)."""

    n_keys: int
    n_images: int
    seed: int | None
    chance: float
    accuracies: list[float]
    quartiles: dict[str, float]


def random_keys_attack(
    transformed: nn.Module,
    params: Mapping[str, Any],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_keys: int = 100,
    seed: int | None = 0,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> RandomKeysResult:
    """Run the attack on ``images`` (uint8 or [0, 1]) with the public ``params`` (``scheme``,
    ``block_size``, ``channels``, ``image_size``, ``ea``) of the key the model was transformed with."""
    x = metrics.as_float(images)
    accs = []
    for i in tqdm(range(n_keys), desc="random keys", leave=False):
        key = generate_key(str(params["scheme"]), int(params["block_size"]), int(params["channels"]), int(params["image_size"]), ea=str(params.get("ea", "permutation")), seed=None if seed is None else seed + i)
        accs.append(metrics.accuracy(metrics.predict(transformed, encrypt_images(x, key), batch_size=batch_size, device=device), labels))
    return RandomKeysResult(n_keys=n_keys, n_images=int(x.shape[0]), seed=seed, chance=1.0 / max(int(labels.max()) + 1, 1) if labels.numel() else float("nan"), accuracies=accs, quartiles=quartiles(accs))


def quartiles(values: list[float]) -> dict[str, float]:
    """min, q1, median, q3, max (linear interpolation)."""
    if not values:
        return {}
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    return dict(zip(("min", "q1", "median", "q3", "max"), q.tolist(), strict=True))
