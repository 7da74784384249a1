"""A certified baseline beside post-averaging: randomised smoothing's certified accuracy against
L2 radius, and on the same images post-averaging's empirical robust accuracy under an adaptive
L2 attack at the same radii (``veilnet robust certify``).

* **Certified accuracy** at radius r (Cohen, Rosenfeld and Kolter, "Certified Adversarial
  Robustness via Randomized Smoothing", section 4): the fraction of the images that CERTIFY
  (:class:`~veilnet.robust.Smoothing`) classifies correctly, without abstaining, with a certified
  radius R ≥ r. Each certificate holds with probability at least 1 − α, so this is a lower bound
  on the smoothed classifier's robust accuracy (up to that α).
* **Post-averaging's robust accuracy** at radius r: the adaptive protocol of
  :mod:`veilnet.robust.evaluation` with EOT-PGD in the L2 ball of radius r, attacking the defence
  itself (gradients averaged over draws of its random directions), judged over ``Setting.draws``
  fresh draws. An attack that fails does not prove robustness, so this is an upper bound on the
  defence's robust accuracy. The two numbers bound different things and are shown side by side,
  not as one comparison of equals.
* **Undefended**: the base model's accuracy under L2 PGD at each radius, for reference.

All radii are L2 norms in [0, 1] pixel space, as σ is. The PGD step is ε/4 at every radius: the
ratio α/ε of the L∞ evaluation settings (:data:`veilnet.robust.attacks.SETTINGS`, 2/255 at 8/255),
with their numbers of steps, restarts and EOT draws. The result is a
:class:`~veilnet.robust.results.Certification`; its report and plot are made by
:func:`veilnet.robust.rendering.write_certification`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from veilnet import data as vdata
from veilnet.errors import ConfigError
from veilnet.metrics import as_float, predict
from veilnet.robust import attacks as attack_zoo
from veilnet.robust.attacks import derive_seed
from veilnet.robust.evaluation import adaptive_protocol, defence_label, defended_predictions
from veilnet.robust.results import Certification
from veilnet.robust.setting import EPS, Setting
from veilnet.robust.smoothing import Smoothing, check_alpha, check_counts

#: The L2 radii (pixel space) the command reports by default.
RADII = (0.25, 0.5, 0.75, 1.0)
#: The attack on the undefended model and the one on post-averaging, with their evaluation settings.
UNDEFENDED_ATTACK, DEFENCE_ATTACK = "pgd", "eot-pgd"


def certified_accuracy(labels: torch.Tensor, predicted: torch.Tensor, radii: torch.Tensor, radius: float) -> float:
    """The fraction of images certified correct at L2 radius ``radius``: ``predicted == label``
    (never where CERTIFY abstained, label −1) and certified radius ≥ ``radius``."""
    if not len(labels):
        return float("nan")
    return ((predicted == labels) & (radii >= radius)).float().mean().item()


def max_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: σ Φ⁻¹(p_A) at n_A = n, where the
    Clopper–Pearson lower bound is p_A = α^(1/n)."""
    from scipy.stats import norm

    return sigma * float(norm.ppf(alpha ** (1.0 / n)))


def attack_settings(radius: float) -> dict[str, dict[str, Any]]:
    """The L2 settings of the undefended attack and of the attack on the defence at ``radius``."""
    settings = {}
    for name in (UNDEFENDED_ATTACK, DEFENCE_ATTACK):
        base = attack_zoo.SETTINGS[name]
        settings[name] = {**base, "norm": "l2", "alpha": radius * base["alpha"] / EPS}
    return settings


def check(*, sigma: float, n0: int, n: int, alpha: float, batch: int, radii: Sequence[float]) -> None:
    """Every argument of :func:`certify` that can be checked without a model: a
    :class:`ConfigError` naming the first bad one."""
    Smoothing(nn.Identity(), sigma, batch=batch)
    check_counts(n0=n0, n=n)
    check_alpha(alpha)
    if not radii or any(not 0 < r < float("inf") for r in radii):
        raise ConfigError(f"radii must be positive finite L2 radii, got {list(radii)}")
    for name, options in attack_settings(max(radii)).items():
        attack_zoo.create(name, nn.Identity(), max(radii), **options)


def certify(
    model: nn.Module,
    split: vdata.ImageSplit,
    *,
    sigma: float,
    n: int,
    n0: int = 100,
    alpha: float = 0.001,
    batch: int = 1000,
    radii: Sequence[float] = RADII,
    n_per_class: int = 10,
    setting: Setting = Setting(),
    attack_batch: int = 8,
    model_name: str = "",
) -> Certification:
    """Randomised smoothing's certificates and post-averaging's L2 robustness on the first
    ``n_per_class`` images of each class of ``split`` (see the module docstring).

    ``setting``: post-averaging's parameters, its draws, the seed and the device; ``batch``: noisy
    copies per forward pass of CERTIFY; ``attack_batch``: images per batch of the attack on the
    defence (each holds 2 × (6K + 1) points in the backward pass). Neither changes the results.
    """
    radii = sorted(float(r) for r in radii)
    check(sigma=sigma, n0=n0, n=n, alpha=alpha, batch=batch, radii=radii)
    if setting.seed is None:
        setting = setting.replace(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
    seed = setting.seed
    assert seed is not None
    sub = vdata.subset(split, n_per_class)
    images, labels = as_float(sub.images), sub.labels.long()
    model = model.to(setting.device).eval()
    seconds = {}

    start = time.perf_counter()
    cert = Smoothing(model, sigma, batch=batch, device=setting.device, progress=True).certify(images, n0, n, alpha, seed=derive_seed(seed, "smoothing"))
    seconds["certify"] = time.perf_counter() - start

    start = time.perf_counter()
    clean = predict(model, images, device=setting.device).argmax(1)
    options = attack_settings(radii[-1])
    undefended = attack_zoo.create(
        UNDEFENDED_ATTACK,
        model,
        radii[-1],
        **options[UNDEFENDED_ATTACK],
        seed=derive_seed(seed, "undefended"),
        device=setting.device,
        progress=f"robust certify: {UNDEFENDED_ATTACK}-l2 on the undefended model",
    )
    undefended_accuracy = [1.0 - success.float().mean().item() for _, success in undefended.run(images, labels, radii)]
    seconds["undefended attack"] = time.perf_counter() - start

    start = time.perf_counter()
    defended_clean = defended_predictions(model, images, setting, "clean")
    rows = []
    for radius in radii:
        name = f"{DEFENCE_ATTACK}-l2@{radius:g}"

        def attack_on(defence: nn.Module, attack_seed: int, radius: float = radius) -> attack_zoo.Attack:
            settings = attack_settings(radius)[DEFENCE_ATTACK]
            return attack_zoo.create(
                DEFENCE_ATTACK,
                defence,
                radius,
                **settings,
                batch_size=attack_batch,
                seed=attack_seed,
                device=setting.device,
                progress=f"robust certify: {name} through {defence_label(setting)}",
            )

        rows.append(adaptive_protocol(model, images, labels, attack_on, setting, defended_clean=defended_clean, name=name))
    seconds["post-averaging attack"] = time.perf_counter() - start

    return Certification(
        model=model_name, data=split.spec, n_per_class=n_per_class, sigma=float(sigma), n0=n0, n=n, alpha=float(alpha), setting=setting, radii=radii,
        labels=labels.tolist(), smoothed_labels=cert.labels.tolist(), certified_radii=cert.radii.tolist(),
        certified_accuracy=[certified_accuracy(labels, cert.labels, cert.radii, r) for r in radii],
        smoothed_clean_accuracy=certified_accuracy(labels, cert.labels, cert.radii, 0.0),
        clean_accuracy=(clean == labels).float().mean().item(), undefended_accuracy=undefended_accuracy, postavg=rows,
        attack_settings={name: options[name] | {"alpha": f"radius × {attack_zoo.SETTINGS[name]['alpha'] / EPS:g}"} for name in options},
        seconds=seconds,
    )  # fmt: skip
