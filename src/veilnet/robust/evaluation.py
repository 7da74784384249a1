"""Evaluating post-averaging: the paper's protocol, the adaptive protocol, and the sweeps.

Paper: "Bandlimiting Neural Networks Against Adversarial Attacks", section 4.

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
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veilnet import data as vdata
from veilnet.errors import ConfigError
from veilnet.metrics import as_float, predict
from veilnet.models.prepared import prepare
from veilnet.report import Result, markdown_table, plot_backend, save_figure
from veilnet.robust import attacks as attack_zoo
from veilnet.robust.attacks import derive_seed
from veilnet.robust.postavg import PostAveraging
from veilnet.robust.setting import Setting

#: Attacks made on the undefended model (protocol 1) and on the defended one (protocol 2).
#: ``fgsm-min``/``pgd-min`` are the paper's own setting (Foolbox 2 defaults: smallest budget).
PAPER_ATTACKS = ("fgsm", "pgd", "fgsm-min", "pgd-min", "deepfool", "cw")
ADAPTIVE_ATTACKS = ("eot-pgd", "square", "apgd-ce", "apgd-dlr")
#: Attacks expensive enough that evaluations run them on a smaller subset (``slow_n_per_class``).
SLOW_ATTACKS = ("cw", "eot-pgd", "square", "apgd-ce", "apgd-dlr")
#: Settings an evaluation sets itself (from its :class:`Setting` and progress bars), not ``overrides``.
RESERVED = ("seed", "device", "progress")
#: The paper's CIFAR-10 row of Table 1 (ResNet-110, r = 6, K = 15, ε = 8/255).
PAPER_CIFAR10 = {
    "clean_accuracy": 0.9368,
    "fgsm": {"attacked_accuracy": 0.1816, "defended_clean_accuracy": 0.9247, "defended_attacked_accuracy": 0.8022, "defence_rate": 0.8080, "num_adversarial": 7552},
    "pgd": {"attacked_accuracy": 0.0000, "defended_clean_accuracy": 0.9255, "defended_attacked_accuracy": 0.8841, "defence_rate": 0.9330, "num_adversarial": 9368},
    "deepfool": {"attacked_accuracy": 0.1968, "defended_clean_accuracy": 0.9254, "defended_attacked_accuracy": 0.8626, "defence_rate": 0.8872, "num_adversarial": 7413},
    "cw": {"attacked_accuracy": 0.0322, "defended_clean_accuracy": 0.9257, "defended_attacked_accuracy": 0.8902, "defence_rate": 0.9367, "num_adversarial": 9046},
}
#: Robust accuracy of post-averaging on CIFAR-10 under the Square attack, reported by its authors.
SQUARE_PAPER_ROBUST_ACCURACY = 0.158


@dataclass(frozen=True)
class Draws(Result):
    """One accuracy of the defended model over independent draws of its random directions."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values and not any(math.isnan(v) for v in self.values) else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values and not math.isnan(self.mean) else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values and not math.isnan(self.mean) else math.nan

    def __str__(self) -> str:
        """``mean (min–max)`` with 3 decimals; the mean alone for one draw; ``nan`` when undefined."""
        if math.isnan(self.mean):
            return "nan"
        return f"{self.mean:.3f}" if len(self.values) == 1 else f"{self.mean:.3f} ({self.low:.3f}–{self.high:.3f})"


@dataclass(frozen=True)
class PaperRow(Result):
    """One row of the paper's Table 1 for one attack made on the undefended model."""

    attack: str
    n: int
    clean_accuracy: float
    attacked_accuracy: float
    defended_clean_accuracy: Draws
    defended_attacked_accuracy: Draws
    defence_rate: Draws
    num_adversarial: int
    seconds: float


@dataclass(frozen=True)
class AdaptiveRow(Result):
    """An attack on the defended model itself: the defended model's clean and robust accuracy.

    ``robust_images[d][i]``: whether, in draw d of the defence, image i of the ``n`` was classified
    correctly on the Attacked set (empty in results written before it was kept). ``randomness``:
    the defence's directions during the attack (:class:`~veilnet.robust.setting.Setting`); with
    ``"fixed"`` the attack ran once per draw, and ``num_attacked``, ``attack_success_rate`` and
    ``seconds`` are over all the draws' runs.
    """

    attack: str
    n: int
    num_attacked: int
    defended_clean_accuracy: Draws
    robust_accuracy: Draws
    attack_success_rate: float
    seconds: float
    robust_images: list[list[bool]] = field(default_factory=list)
    randomness: str = "fresh"


@dataclass(frozen=True)
class Evaluation(Result):
    """Both protocols for one model, defence and data subset, with every setting used."""

    model: str
    data: str
    n_per_class: int
    slow_n_per_class: int
    setting: Setting
    attack_settings: dict[str, dict[str, Any]]
    paper: list[PaperRow] = field(default_factory=list)
    adaptive: list[AdaptiveRow] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep(Result):
    """Defended clean accuracy, defence rate and time per image against one defence parameter
    (the others as in ``setting``)."""

    model: str
    parameter: str
    values: list[float]
    setting: Setting
    attack: str
    n: int
    num_adversarial: int
    clean_accuracy: list[Draws]
    defence_rate: list[Draws]
    seconds_per_image: list[float]
    plain_seconds_per_image: float


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
    return [predict(defend(model, setting, derive_seed(setting.seed, *stream, d)), images, device=setting.device).argmax(1) for d in range(setting.draws)]


def _accuracy(predictions: Sequence[torch.Tensor], labels: torch.Tensor) -> Draws:
    return Draws([(p == labels).float().mean().item() if len(labels) else math.nan for p in predictions])


def paper_protocol(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: attack_zoo.Attack, setting: Setting, *, defended_clean: list[torch.Tensor] | None = None, name: str | None = None) -> PaperRow:
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


def adaptive_protocol(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack_on: AttackOn, setting: Setting, *, name: str, defended_clean: list[torch.Tensor] | None = None) -> AdaptiveRow:
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
    """
    settings = check_attacks(attacks, overrides, setting)
    setting = _with_seed(setting)
    assert setting.seed is not None
    slow_n = n_per_class if slow_n_per_class is None else min(slow_n_per_class, n_per_class)
    model = prepare(model.to(setting.device).eval(), compile=compile)
    subsets = {n: vdata.subset(split, n) for n in {n_per_class, slow_n}}
    clean: dict[int, list[torch.Tensor]] = {}

    def defended_clean(n: int) -> list[torch.Tensor]:
        if n not in clean:
            clean[n] = defended_predictions(model, as_float(subsets[n].images), setting, "clean")
        return clean[n]

    paper, adaptive = [], []
    for name in attacks:
        n = slow_n if name in SLOW_ATTACKS else n_per_class
        sub = subsets[n]
        options = {**(overrides or {}).get(name, {}), "progress": True, "device": setting.device}
        if name in ADAPTIVE_ATTACKS:

            def attack_on(defence: nn.Module, seed: int, name: str = name, options: dict[str, Any] = options) -> attack_zoo.Attack:
                return attack_zoo.create(name, defence, setting.eps, **options, seed=seed)

            clean_draws = defended_clean(n) if setting.randomness == "fresh" else None
            adaptive.append(adaptive_protocol(model, sub.images, sub.labels, attack_on, setting, name=name, defended_clean=clean_draws))
        else:
            attack = attack_zoo.create(name, model, setting.eps, **options, seed=derive_seed(setting.seed, name))
            paper.append(paper_protocol(model, sub.images, sub.labels, attack, setting, defended_clean=defended_clean(n), name=name))
    return Evaluation(model=model_name, data=split.spec, n_per_class=n_per_class, slow_n_per_class=slow_n, setting=setting, attack_settings=settings, paper=paper, adaptive=adaptive)


def sweep(model: nn.Module, split: vdata.ImageSplit, grid: dict[str, Sequence[float]], setting: Setting = Setting(), *, attack: str = "pgd-min", n_per_class: int = 10, model_name: str = "") -> list[Sweep]:
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
    points = {parameter: [_swept_value(parameter, v) for v in values] for parameter, values in grid.items()}
    for parameter, values in points.items():
        for value in values:
            setting.replace(**{parameter: value})  # raises on a bad value before any work
    setting = _with_seed(setting)
    assert setting.seed is not None
    sub = vdata.subset(split, n_per_class)
    images, labels = as_float(sub.images), sub.labels
    model = model.to(setting.device).eval()
    made = attack_zoo.create(attack, model, setting.eps, seed=derive_seed(setting.seed, attack), device=setting.device, progress=True)
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
                model=model_name, parameter=parameter, values=[float(v) for v in values], setting=setting, attack=attack, n=len(labels),
                num_adversarial=len(adv_labels), clean_accuracy=clean_acc, defence_rate=rates, seconds_per_image=times, plain_seconds_per_image=plain,
            )  # fmt: skip
        )
    return results


def _swept_value(parameter: str, value: float) -> int | float:
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


# -- reports ------------------------------------------------------------------------------------


def paper_table(evaluation: Evaluation, *, with_paper: bool = True) -> str:
    """Table 1's layout, with the paper's CIFAR-10 figures in adjacent columns when ``with_paper``."""
    headers = ["attack", "n", "clean", "attacked", "defended clean", "defended attacked", "defence rate", "#Adv"]
    if with_paper:
        headers += ["paper: defended clean", "paper: defence rate", "paper: #Adv/n"]
    rows = []
    for row in evaluation.paper:
        cells: list[Any] = [row.attack, row.n, row.clean_accuracy, row.attacked_accuracy, str(row.defended_clean_accuracy), str(row.defended_attacked_accuracy), str(row.defence_rate), row.num_adversarial]
        if with_paper:
            ref = PAPER_CIFAR10.get(attack_zoo.VARIANT_OF.get(row.attack, row.attack), {})
            cells += [ref.get("defended_clean_accuracy", "-"), ref.get("defence_rate", "-"), ref["num_adversarial"] / 10000 if ref else "-"]
        rows.append(cells)
    return markdown_table(headers, rows)


#: How the adaptive table names each setting of the defence's randomness.
RANDOMNESS_NAMES = {"fresh": "fresh per query", "fixed": "fixed per draw (seeded)"}


def adaptive_table(evaluation: Evaluation) -> str:
    """One row per adaptive attack; with fixed directions "attacked" counts the images of every draw's run."""
    headers = ["attack (on the defended model)", "directions", "n", "attacked", "defended clean", "robust accuracy", "attack success", "seconds", "paper / attack authors"]
    rows = [
        [
            r.attack, RANDOMNESS_NAMES[r.randomness], r.n, r.num_attacked if r.randomness == "fresh" else f"{r.num_attacked} in {len(r.robust_images)} runs", str(r.defended_clean_accuracy),
            str(r.robust_accuracy), r.attack_success_rate, round(r.seconds, 1), SQUARE_PAPER_ROBUST_ACCURACY if r.attack == "square" else "-",
        ]  # fmt: skip
        for r in evaluation.adaptive
    ]
    return markdown_table(headers, rows)


def sweep_table(result: Sweep) -> str:
    headers = [result.parameter, "defended clean", "defence rate", "ms / image", "× plain"]
    rows = [
        [v, str(c), str(d), round(t * 1e3, 2), round(t / result.plain_seconds_per_image, 1)]
        for v, c, d, t in zip(result.values, result.clean_accuracy, result.defence_rate, result.seconds_per_image)
    ]
    return markdown_table(headers, rows)


def _draws_note(setting: Setting) -> str:
    if setting.draws == 1:
        return "Defended accuracies: one draw of the defence's random directions."
    return f"Defended accuracies: mean over {setting.draws} independent draws of the defence's random directions, (min–max) over the draws."


def _randomness_note(setting: Setting) -> str:
    if setting.randomness == "fresh":
        return "Directions fresh at every query of the attack (the Square attack authors' setting); robust accuracy judged by fresh draws."
    return (
        f"Directions fixed: each of the {setting.draws} draws of the defence is one seeded set of K directions shared by every image and query; "
        "each attack ran once per draw against it, on the images that draw classifies correctly, and was judged by the same draw."
    )


def render_report(evaluation: Evaluation | None = None, sweeps: Sequence[Sweep] = ()) -> str:
    """The Markdown report of an evaluation and its sweeps, from the results alone (so it can be
    rebuilt from their JSON, :func:`rebuild_report`). Sweeps are listed radius first."""
    parts = []
    if evaluation is not None:
        s = evaluation.setting
        parts.append(
            f"# Post-averaging: {evaluation.model} on {evaluation.data}\n\n"
            f"Defence: K = {s.directions}, r = {s.radius} ({s.space} space); ε = {s.eps:.5g} (L∞); "
            f"first {evaluation.n_per_class} images per class ({evaluation.slow_n_per_class} for {', '.join(SLOW_ATTACKS)}); seed {s.seed}.\n"
            f"{_draws_note(s)}\n"
        )
        if evaluation.paper:
            parts.append("## Paper protocol (attacks on the undefended model; Table 1)\n\n" + paper_table(evaluation) + "\n")
        if evaluation.adaptive:
            worst = worst_case(evaluation.adaptive)
            headline = "" if worst is None else (
                f"**Robust accuracy, worst case over {', '.join(r.attack for r in evaluation.adaptive)}: {worst}** "
                f"(an image counts as robust only if every attack failed on it; n = {evaluation.adaptive[0].n}).\n\n"
            )
            parts.append("## Adaptive protocol (attacks on the defended model)\n\n" + _randomness_note(s) + "\n\n" + headline + adaptive_table(evaluation) + "\n")
        parts.append("Settings: " + ", ".join(f"{k} {v}" for k, v in evaluation.attack_settings.items()) + "\n")
    for result in sorted(sweeps, key=lambda r: ("radius", "directions").index(r.parameter)):
        fixed = {k: v for k, v in result.setting.defence.items() if k != result.parameter}
        parts.append(
            f"## Sweep over {result.parameter} ({result.attack} adversarials, n = {result.n}, #Adv = {result.num_adversarial}, {fixed}, ε = {result.setting.eps:.5g}, seed {result.setting.seed})\n\n"
            + f"{_draws_note(result.setting)}\n\n"
            + sweep_table(result)
            + f"\n\nPlain model: {result.plain_seconds_per_image * 1e3:.3f} ms / image. Plot: sweep-{result.parameter}.png\n"
        )
    return "\n".join(parts)


def write_report(out_dir: str | Path, evaluation: Evaluation | None = None, sweeps: Sequence[Sweep] = ()) -> Path:
    """JSON for every result (``evaluation.json``, ``sweep-PARAMETER.json``), a PNG plot per sweep
    and ``report.md`` (:func:`render_report`); returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if evaluation is not None:
        evaluation.save(out / "evaluation.json")
    for result in sweeps:
        result.save(out / f"sweep-{result.parameter}.json")
        plot_sweep(result, out / f"sweep-{result.parameter}.png")
    report = out / "report.md"
    report.write_text(render_report(evaluation, sweeps))
    return report


def rebuild_report(out_dir: str | Path) -> str:
    """The ``report.md`` of ``out_dir``, rebuilt from its JSON results alone (no rerun)."""
    out = Path(out_dir)
    evaluation = Evaluation.load(out / "evaluation.json") if (out / "evaluation.json").exists() else None
    sweeps = [Sweep.load(out / f"sweep-{p}.json") for p in ("radius", "directions") if (out / f"sweep-{p}.json").exists()]
    return render_report(evaluation, sweeps)


def plot_sweep(result: Sweep, path: str | Path) -> Path:
    """Defence rate and clean accuracy (means over the draws, bars: min–max) against the swept
    parameter (and time per image for K)."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for series, style, label in ((result.defence_rate, "o-", f"defence rate ({result.attack})"), (result.clean_accuracy, "s--", "defended clean accuracy")):
        means = [d.mean for d in series]
        spread = [[m - d.low for m, d in zip(means, series)], [d.high - m for m, d in zip(means, series)]]
        ax.errorbar(result.values, means, yerr=spread, fmt=style, capsize=3, label=label)
    ax.set_xlabel("radius r" if result.parameter == "radius" else "directions K")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower left")
    if result.parameter == "directions":
        twin = ax.twinx()
        twin.plot(result.values, [t * 1e3 for t in result.seconds_per_image], "^:", color="gray")
        twin.set_ylabel("ms per image", color="gray")
    ax.set_title(f"post-averaging: {result.model} (n = {result.n})")
    return save_figure(fig, path, dpi=120)
