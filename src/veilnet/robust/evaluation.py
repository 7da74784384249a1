"""Evaluating post-averaging: the paper's protocol, the adaptive protocol, and the sweeps.

Paper: "Bandlimiting Neural Networks Against Adversarial Attacks": the defence of section 3.1
(Eq. 7–8, :class:`~veilnet.robust.PostAveraging`) measured as in section 4. This module computes
the numbers; their result types and the paper's figures are in :mod:`veilnet.robust.results`,
their Markdown reports and plots in :mod:`veilnet.robust.rendering`.

1. **Paper protocol** (section 4.2, Table 1): adversarial examples are made on the *undefended*
   model. The Attacked set replaces every correctly classified image by its adversarial example
   where the attack found one (#Adv of them) and keeps every other image. Reported: accuracy of
   the original and of the defended model on the Clean and the Attacked sets, and the defence
   rate, the fraction of the #Adv adversarial examples that the defended model classifies
   correctly.
2. **Adaptive protocol**: the attacks run against the defended model itself: EOT-PGD through the
   averaging (gradients averaged over draws of its random directions) and the Square attack
   querying it. The images the defended model classifies correctly (in the first draw of the
   clean pass) are attacked; robust accuracy is the defended model's accuracy on the Attacked set
   (the returned images where an image was attacked, the clean one elsewhere), judged with fresh
   directions, as a user of the defence would see it. With ``Setting.randomness = "fixed"`` each
   draw of the defence is deterministic instead (one seeded set of directions): the attack runs
   once per draw against that draw, on the images it classifies correctly, and is judged by it.
   The headline is the per-image worst case
   over all the adaptive attacks run (:func:`worst_case`): an image counts as robust only if the
   defended model classifies it correctly after every attack (AutoAttack's way of combining
   attacks, Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
   of diverse parameter-free attacks", section 5).
3. **Sweeps**: defence rate and clean accuracy against the radius r (Fig. 2) and against the
   number of directions K with the time per image (Table 2), on adversarials made on the
   undefended model as in (1), by default with ``pgd-min`` (the paper's Foolbox PGD).

**Draws.** Post-averaging draws fresh random directions on every call, so one pass over a set of
images is one draw of a random accuracy. Every accuracy of the defended model is measured over
``Setting.draws`` independent draws and reported as their mean with the spread (min–max); each
row keeps the per-draw values (:class:`Draws`).

**Seeds.** Every random stream is named and seeded from the run's seed alone
(:func:`~veilnet.robust.attacks.derive_seed`): the defence's draws on the clean images by
``(seed, "clean", d)``, attack A's own randomness by ``(seed, A)`` and the defence's draws on its
examples by ``(seed, A, "defence", d)``. With fixed directions, draw d of the defence is seeded
``(seed, "fixed", d)`` (the same for every attack, so the worst case of draw d is over attacks on
one and the same defence) and attack A's randomness in draw d ``(seed, A, "fixed", d)``. So an
attack's numbers are the same whether it runs alone or after other attacks in the same command.

**Several processes** (``torchrun``, :mod:`veilnet.distributed`): :func:`evaluate` hands the
attacks out to the ranks in turn (attack j to rank j mod N), each rank runs its attacks on all
the images, and rank 0 merges the rows in the order asked. Because every attack's streams are
named by the run's seed and the attack alone, the merged evaluation is the one a single process
computes, row for row. The images are not split: an attack's stream for image i is named by
i's place among the images it attacks, and the defence's clean draws come from one generator
per draw over the whole set, so a part of the images would draw other numbers. The speed-up is
at most the number of attacks, and less when their costs differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from veilnet import data as vdata
from veilnet import distributed
from veilnet.errors import ConfigError
from veilnet.metrics import as_float, predict
from veilnet.models.prepared import prepare
from veilnet.progress import bar
from veilnet.robust import attacks as attack_zoo
from veilnet.robust.attacks import derive_seed
from veilnet.robust.postavg import PostAveraging
from veilnet.robust.results import AdaptiveRow, Draws, Evaluation, PaperRow, Sweep
from veilnet.robust.setting import Setting

#: Attacks made on the undefended model (protocol 1) and on the defended one (protocol 2).
#: ``fgsm-min``/``pgd-min`` are the paper's own setting (Foolbox 2 defaults: smallest budget).
PAPER_ATTACKS = ("fgsm", "pgd", "fgsm-min", "pgd-min", "deepfool", "cw")
ADAPTIVE_ATTACKS = ("eot-pgd", "square", "apgd-ce", "apgd-dlr")
#: Attacks expensive enough that evaluations run them on a smaller subset (``slow_n_per_class``).
SLOW_ATTACKS = ("cw", "eot-pgd", "square", "apgd-ce", "apgd-dlr")
#: Settings an evaluation sets itself (from its :class:`Setting` and progress bars), not ``overrides``.
RESERVED = ("seed", "device", "progress")


def _post_averaging(model: nn.Module, setting: Setting, **randomness: Any) -> PostAveraging:
    return PostAveraging(model, **setting.defence, **randomness).eval()


def defend(model: nn.Module, setting: Setting, seed: int) -> PostAveraging:
    """Post-averaging with ``setting``'s parameters, fresh directions on every call drawn from a generator seeded ``seed``."""
    return _post_averaging(model, setting, generator=torch.Generator().manual_seed(seed))


def fixed_defence(model: nn.Module, setting: Setting, draw: int) -> PostAveraging:
    """Draw ``draw`` of post-averaging with fixed directions: K directions drawn once from the
    stream ``(setting.seed, "fixed", draw)`` and shared by every image and call (deterministic)."""
    assert setting.seed is not None
    return _post_averaging(model, setting, seed=derive_seed(setting.seed, "fixed", draw))


def defended_predictions(model: nn.Module, images: torch.Tensor, setting: Setting, *stream: object) -> list[torch.Tensor]:
    """The defended model's predicted labels on ``images`` in each of ``setting.draws`` draws;
    draw d's directions come from the stream ``(setting.seed, *stream, d)``."""
    assert setting.seed is not None
    if not len(images):
        return [torch.zeros(0, dtype=torch.long) for _ in range(setting.draws)]
    draws = bar(range(setting.draws), desc=f"{defence_label(setting)} on {len(images)} images", unit="draw")
    return [predict(defend(model, setting, derive_seed(setting.seed, *stream, d)), images, device=setting.device).argmax(1) for d in draws]


def defence_label(setting: Setting) -> str:
    """The defence in a progress bar's name: ``post-averaging K=15 r=6``."""
    return f"post-averaging K={setting.directions} r={setting.radius:g}"


def _accuracy(predictions: Sequence[torch.Tensor], labels: torch.Tensor) -> Draws:
    return Draws([(p == labels).float().mean().item() if len(labels) else math.nan for p in predictions])


def paper_protocol(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: attack_zoo.Attack,
    setting: Setting,
    *,
    defended_clean: list[torch.Tensor] | None = None,
    name: str | None = None,
) -> PaperRow:
    """Table 1's row for ``attack`` (made on ``model``, the undefended one); see the module docstring.

    ``defended_clean``: the defended model's predictions on ``images`` in each draw, when already
    computed; ``name``: the row's attack name (default: the attack's), which also names its streams.
    """
    name = name or attack.name
    images = as_float(images)
    start = time.perf_counter()
    pred = predict(model, images, device=setting.device).argmax(1)
    correct = (pred == labels).nonzero()[:, 0]
    adv, success = attack(images[correct], labels[correct])
    made = correct[success]
    seconds = time.perf_counter() - start
    if defended_clean is None:
        defended_clean = defended_predictions(model, images, setting, "clean")
    defended_adv = defended_predictions(model, adv[success], setting, name, "defence")
    attacked = []
    for clean_d, adv_d in zip(defended_clean, defended_adv):
        attacked_d = clean_d.clone()
        attacked_d[made] = adv_d
        attacked.append(attacked_d)
    n = len(labels)
    return PaperRow(
        attack=name,
        n=n,
        clean_accuracy=(pred == labels).float().mean().item(),
        attacked_accuracy=(len(correct) - len(made)) / n,
        defended_clean_accuracy=_accuracy(defended_clean, labels),
        defended_attacked_accuracy=_accuracy(attacked, labels),
        defence_rate=_accuracy(defended_adv, labels[made]),
        num_adversarial=len(made),
        seconds=seconds,
    )


#: Builds an attack on a (defended) model with its own randomness seeded by the given seed.
AttackOn = Callable[[nn.Module, int], attack_zoo.Attack]


def adaptive_protocol(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack_on: AttackOn,
    setting: Setting,
    *,
    name: str,
    defended_clean: list[torch.Tensor] | None = None,
) -> AdaptiveRow:
    """The attack ``attack_on(defence, seed)`` run against post-averaging on ``model`` (see the
    module docstring), its row named ``name``.

    Fresh directions (``setting.randomness``): one run, against the defence drawing anew at every
    query, on the images the defended model gets right in the first clean draw
    (``defended_clean``, the defended predictions per draw when already computed); judged by
    ``setting.draws`` fresh draws. Fixed: one run per draw d against :func:`fixed_defence` d, on
    the images that draw gets right, judged by that draw.
    """
    images = as_float(images)
    assert setting.seed is not None
    clean, judged, successes, seconds = [], [], [], 0.0
    if setting.randomness == "fresh":
        clean = defended_clean if defended_clean is not None else defended_predictions(model, images, setting, "clean")
        attack = attack_on(defend(model, setting, derive_seed(setting.seed, name, "attacked")), derive_seed(setting.seed, name))
        attacked_set, success, seconds = _attacked_set(attack, images, labels, clean[0])
        judged, successes = defended_predictions(model, attacked_set, setting, name, "defence"), [success]
    else:
        for d in range(setting.draws):
            defence = fixed_defence(model, setting, d)
            clean.append(predict(defence, images, device=setting.device).argmax(1))
            attacked_set, success, took = _attacked_set(attack_on(defence, derive_seed(setting.seed, name, "fixed", d)), images, labels, clean[-1])
            judged.append(predict(defence, attacked_set, device=setting.device).argmax(1))
            successes.append(success)
            seconds += took
    success = torch.cat(successes)
    n = len(labels)
    robust = [p == labels for p in judged]
    return AdaptiveRow(
        attack=name,
        n=n,
        num_attacked=len(success),
        defended_clean_accuracy=_accuracy(clean, labels),
        robust_accuracy=Draws([r.float().mean().item() if n else math.nan for r in robust]),
        attack_success_rate=success.float().mean().item() if len(success) else math.nan,
        seconds=seconds,
        robust_images=[r.tolist() for r in robust],
        randomness=setting.randomness,
    )


def _attacked_set(attack: attack_zoo.Attack, images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``images`` with those ``predicted`` correctly replaced by ``attack``'s examples, the
    attack's success on them, and its seconds."""
    correct = (predicted == labels).nonzero()[:, 0]
    start = time.perf_counter()
    adv, success = attack(images[correct], labels[correct])
    seconds = time.perf_counter() - start
    attacked_set = images.clone()
    attacked_set[correct] = adv
    return attacked_set, success, seconds


def worst_case(rows: Sequence[AdaptiveRow]) -> Draws | None:
    """Robust accuracy under the per-image worst case over ``rows`` (attacks on the same images):
    in draw d, image i counts as robust only if it was classified correctly in draw d of every
    attack's Attacked set. None when a row lacks per-image results, the rows' images differ or
    their defences' randomness does (fresh and fixed draws are different defences)."""
    if not rows or any(not r.robust_images for r in rows) or len({r.n for r in rows}) > 1 or len({r.randomness for r in rows}) > 1:
        return None
    draws = min(len(r.robust_images) for r in rows)
    every = [torch.tensor([r.robust_images[d] for r in rows], dtype=torch.bool).all(0) for d in range(draws)]
    return Draws([e.float().mean().item() if len(e) else math.nan for e in every])


def check_attacks(names: Sequence[str], overrides: dict[str, dict[str, Any]] | None, setting: Setting) -> dict[str, dict[str, Any]]:
    """Each attack's settings (:data:`~veilnet.robust.attacks.SETTINGS` with ``overrides``),
    checked by building every attack once: an unknown attack, an override for an attack not run,
    an unknown setting name or a bad value is a :class:`ConfigError` before any work starts."""
    if not names:
        raise ConfigError("no attack to run: name at least one")
    overrides = overrides or {}
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"settings given for {', '.join(stray)}, which is not among the attacks run ({', '.join(names)})")
    settings = {}
    for name in names:
        given = overrides.get(name, {})
        reserved = sorted(set(given) & set(RESERVED))
        if reserved:
            raise ConfigError(f"{name}.{reserved[0]} is set for every attack by the run's own option (--{reserved[0]})")
        settings[name] = {**attack_zoo.SETTINGS.get(name, {}), **given}
        attack_zoo.create(name, nn.Identity(), setting.eps, **given)  # raises on a bad name or value
    return settings


def evaluate(
    model: nn.Module,
    split: vdata.ImageSplit,
    setting: Setting = Setting(),
    *,
    attacks: Sequence[str] = PAPER_ATTACKS + ADAPTIVE_ATTACKS,
    n_per_class: int = 100,
    slow_n_per_class: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    model_name: str = "",
    compile: bool = False,
) -> Evaluation:
    """Both protocols on the first ``n_per_class`` images of each class of ``split``.

    The attacks in :data:`SLOW_ATTACKS` use the first ``slow_n_per_class`` images per class
    (default: ``n_per_class``). ``attacks`` in :data:`PAPER_ATTACKS` go to protocol 1, those in
    :data:`ADAPTIVE_ATTACKS` to protocol 2. ``overrides`` changes an attack's settings
    (:data:`veilnet.robust.attacks.SETTINGS`); all of them are checked before any attack runs.
    ``compile`` runs the model through :func:`veilnet.models.prepare` (defence and attacks alike).
    Under several processes the ranks share the attacks and every rank returns the merged
    evaluation (module docstring); rank 0 alone shows progress.
    """
    settings = check_attacks(attacks, overrides, setting)
    setting = distributed.from_main(lambda: _with_seed(setting))
    assert setting.seed is not None
    slow_n = n_per_class if slow_n_per_class is None else min(slow_n_per_class, n_per_class)
    model = prepare(model.to(setting.device).eval(), compile=compile)
    subsets = {n: vdata.subset(split, n) for n in {n_per_class, slow_n}}
    clean: dict[int, list[torch.Tensor]] = {}

    def defended_clean(n: int) -> list[torch.Tensor]:
        if n not in clean:
            clean[n] = defended_predictions(model, as_float(subsets[n].images), setting, "clean")
        return clean[n]

    world = distributed.current()
    rows: list[tuple[int, PaperRow | AdaptiveRow]] = []
    for j, name in enumerate(attacks):
        if j % world.size != world.rank:
            continue
        n = slow_n if name in SLOW_ATTACKS else n_per_class
        sub = subsets[n]
        target = f"through {defence_label(setting)}" if name in ADAPTIVE_ATTACKS else "on the undefended model"
        label = f"robust evaluate {j + 1}/{len(attacks)}: {name} {target}"
        options = {**(overrides or {}).get(name, {}), "progress": label if world.main else False, "device": setting.device}
        if name in ADAPTIVE_ATTACKS:

            def attack_on(defence: nn.Module, seed: int, name: str = name, options: dict[str, Any] = options) -> attack_zoo.Attack:
                return attack_zoo.create(name, defence, setting.eps, **options, seed=seed)

            clean_draws = defended_clean(n) if setting.randomness == "fresh" else None
            rows.append((j, adaptive_protocol(model, sub.images, sub.labels, attack_on, setting, name=name, defended_clean=clean_draws)))
        else:
            attack = attack_zoo.create(name, model, setting.eps, **options, seed=derive_seed(setting.seed, name))
            rows.append((j, paper_protocol(model, sub.images, sub.labels, attack, setting, defended_clean=defended_clean(n), name=name)))
    merged = [row for _, row in sorted((row for part in distributed.gather(rows) for row in part), key=lambda item: item[0])]
    paper = [row for row in merged if isinstance(row, PaperRow)]
    adaptive = [row for row in merged if isinstance(row, AdaptiveRow)]
    return Evaluation(
        model=model_name,
        data=split.spec,
        n_per_class=n_per_class,
        slow_n_per_class=slow_n,
        setting=setting,
        attack_settings=settings,
        paper=paper,
        adaptive=adaptive,
    )


def sweep(
    model: nn.Module,
    split: vdata.ImageSplit,
    grid: dict[str, Sequence[float]],
    setting: Setting = Setting(),
    *,
    attack: str = "pgd-min",
    n_per_class: int = 10,
    model_name: str = "",
) -> list[Sweep]:
    """Defence against ``attack``'s adversarials (made on ``model`` once) for each value of each
    parameter in ``grid`` (``radius`` and/or ``directions``), the others as in ``setting``.

    Time per image is that of the defended model's forward passes on the clean images, batched,
    averaged over the draws; ``plain_seconds_per_image`` is the undefended model's, measured in
    the same run.
    """
    for parameter in grid:
        if parameter not in ("radius", "directions"):
            raise ConfigError(f"sweep parameter must be radius or directions, got {parameter!r}")
    check_attacks([attack], None, setting)
    points = {parameter: [sweep_value(parameter, v) for v in values] for parameter, values in grid.items()}
    for parameter, values in points.items():
        for value in values:
            setting.replace(**{parameter: value})  # raises on a bad value before any work
    setting = _with_seed(setting)
    assert setting.seed is not None
    sub = vdata.subset(split, n_per_class)
    images, labels = as_float(sub.images), sub.labels
    model = model.to(setting.device).eval()
    made = attack_zoo.create(
        attack, model, setting.eps, seed=derive_seed(setting.seed, attack), device=setting.device, progress=f"robust sweep: {attack} on the undefended model"
    )
    correct = (predict(model, images, device=setting.device).argmax(1) == labels).nonzero()[:, 0]
    adv, success = made(images[correct], labels[correct])
    adversarials, adv_labels = adv[success], labels[correct[success]]
    plain = _timed(lambda: predict(model, images, device=setting.device))[1] / len(labels)
    results = []
    for parameter, values in points.items():
        clean_acc, rates, times = [], [], []
        for value in values:
            at = setting.replace(**{parameter: value})
            start = time.perf_counter()
            clean_pred = defended_predictions(model, images, at, "sweep", parameter, value, "clean")
            times.append((time.perf_counter() - start) / (len(labels) * at.draws))
            clean_acc.append(_accuracy(clean_pred, labels))
            rates.append(_accuracy(defended_predictions(model, adversarials, at, "sweep", parameter, value, "defence"), adv_labels))
        results.append(
            Sweep(
                model=model_name,
                parameter=parameter,
                values=[float(v) for v in values],
                setting=setting,
                attack=attack,
                n=len(labels),
                num_adversarial=len(adv_labels),
                clean_accuracy=clean_acc,
                defence_rate=rates,
                seconds_per_image=times,
                plain_seconds_per_image=plain,
            )  # fmt: skip
        )
    return results


def sweep_value(parameter: str, value: float) -> int | float:
    """``value`` as a value of the swept ``parameter``: a whole number of directions K as an int
    (any other number is a :class:`ConfigError`), a radius r as a float."""
    if parameter == "directions":
        if float(value) != int(value):
            raise ConfigError(f"numbers of directions are whole numbers, got {value}")
        return int(value)
    return float(value)


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _with_seed(setting: Setting) -> Setting:
    """``setting`` with a seed: its own, or one drawn now (and recorded in the result)."""
    return setting if setting.seed is not None else setting.replace(seed=int(torch.randint(0, 2**31 - 1, ()).item()))


__all__ = ["evaluate", "sweep"]
