"""Evaluating post-averaging: the paper's protocol, the adaptive protocol, and the sweeps.

1. **Paper protocol** (section 4.2, Table 1): adversarial examples are made on the *undefended*
   model. The Attacked set replaces every correctly classified image by its adversarial example
   where the attack found one (#Adv of them) and keeps every other image. Reported: accuracy of
   the original and of the defended model on the Clean and the Attacked sets, and the defence
   rate, the fraction of the #Adv adversarial examples that the defended model classifies
   correctly.
2. **Adaptive protocol**: the attacks run against the defended model itself: EOT-PGD through the
   averaging (gradients averaged over draws of its random directions) and the Square attack
   querying it. Robust accuracy is the defended model's accuracy on the returned images, judged
   with fresh random directions (what a user of the defence would see).
3. **Sweeps**: defence rate and clean accuracy against the radius r (Fig. 2) and against the
   number of directions K with the time per image (Table 2), on adversarials made on the
   undefended model as in (1), by default with ``pgd-min`` (the paper's Foolbox PGD).

The defended model draws fresh directions on every call, from a generator seeded by the run's
seed, so a run is reproducible and records its seed.
"""

from __future__ import annotations

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
from veilnet.report import Result, markdown_table, plot_backend
from veilnet.robust import attacks as attack_zoo
from veilnet.robust.postavg import PostAveraging

#: Attacks made on the undefended model (protocol 1) and on the defended one (protocol 2).
#: ``fgsm-min``/``pgd-min`` are the paper's own setting (Foolbox 2 defaults: smallest budget).
PAPER_ATTACKS = ("fgsm", "pgd", "fgsm-min", "pgd-min", "deepfool", "cw")
ADAPTIVE_ATTACKS = ("eot-pgd", "square")
#: Attacks expensive enough that evaluations run them on a smaller subset (``slow_n_per_class``).
SLOW_ATTACKS = ("cw", "eot-pgd", "square")
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
class PaperRow(Result):
    """One row of the paper's Table 1 for one attack made on the undefended model."""

    attack: str
    n: int
    clean_accuracy: float
    attacked_accuracy: float
    defended_clean_accuracy: float
    defended_attacked_accuracy: float
    defence_rate: float
    num_adversarial: int
    seconds: float


@dataclass(frozen=True)
class AdaptiveRow(Result):
    """An attack on the defended model itself: its clean and robust accuracy."""

    attack: str
    n: int
    defended_clean_accuracy: float
    robust_accuracy: float
    attack_success_rate: float
    seconds: float


@dataclass(frozen=True)
class Evaluation(Result):
    """Both protocols for one model, defence and data subset, with every setting used."""

    model: str
    data: str
    n_per_class: int
    slow_n_per_class: int
    eps: float
    defence: dict[str, Any]
    seed: int
    settings: dict[str, dict[str, Any]]
    paper: list[PaperRow] = field(default_factory=list)
    adaptive: list[AdaptiveRow] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep(Result):
    """Defended clean accuracy, defence rate and time per image against one defence parameter."""

    model: str
    parameter: str
    values: list[float]
    fixed: dict[str, Any]
    attack: str
    n: int
    num_adversarial: int
    seed: int
    clean_accuracy: list[float]
    defence_rate: list[float]
    seconds_per_image: list[float]
    plain_seconds_per_image: float


def defend(model: nn.Module, *, directions: int = 15, radius: float = 6.0, space: str = "normalized", seed: int | None = None) -> PostAveraging:
    """Post-averaging with fresh directions on every call, drawn from a generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return PostAveraging(model, directions=directions, radius=radius, space=space, generator=generator).eval()


def paper_protocol(model: nn.Module, defended: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: attack_zoo.Attack, *, defended_clean: torch.Tensor | None = None, name: str | None = None) -> PaperRow:
    """Table 1's row for ``attack`` (made on ``model``, the undefended one); see the module docstring.

    ``defended_clean``: the defended model's predictions on ``images`` when already computed;
    ``name``: the row's attack name (default: the attack's).
    """
    images = as_float(images)
    start = time.perf_counter()
    device = attack.device
    pred = predict(model, images, device=device).argmax(1)
    correct = (pred == labels).nonzero()[:, 0]
    adv, success = attack(images[correct], labels[correct])
    made = correct[success]
    adversarials = adv[success]
    seconds = time.perf_counter() - start
    if defended_clean is None:
        defended_clean = predict(defended, images, device=device).argmax(1)
    defended_adv = predict(defended, adversarials, device=device).argmax(1) if len(made) else torch.zeros(0, dtype=torch.long)
    defended_attacked = defended_clean.clone()
    defended_attacked[made] = defended_adv
    n = len(labels)
    return PaperRow(
        attack=name or attack.name,
        n=n,
        clean_accuracy=(pred == labels).float().mean().item(),
        attacked_accuracy=(len(correct) - len(made)) / n,
        defended_clean_accuracy=(defended_clean == labels).float().mean().item(),
        defended_attacked_accuracy=(defended_attacked == labels).float().mean().item(),
        defence_rate=(defended_adv == labels[made]).float().mean().item() if len(made) else float("nan"),
        num_adversarial=len(made),
        seconds=seconds,
    )


def adaptive_protocol(defended: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: attack_zoo.Attack, *, defended_clean: torch.Tensor | None = None) -> AdaptiveRow:
    """``attack`` run on the defended model itself; robust accuracy judged with fresh directions."""
    images = as_float(images)
    device = attack.device
    if defended_clean is None:
        defended_clean = predict(defended, images, device=device).argmax(1)
    correct = (defended_clean == labels).nonzero()[:, 0]
    start = time.perf_counter()
    adv, success = attack(images[correct], labels[correct])
    seconds = time.perf_counter() - start
    robust = (predict(defended, adv, device=device).argmax(1) == labels[correct]).sum().item() if len(correct) else 0
    n = len(labels)
    return AdaptiveRow(
        attack=attack.name,
        n=n,
        defended_clean_accuracy=len(correct) / n,
        robust_accuracy=robust / n,
        attack_success_rate=success.float().mean().item() if len(correct) else float("nan"),
        seconds=seconds,
    )


def evaluate(
    model: nn.Module,
    split: vdata.ImageSplit,
    *,
    attacks: Sequence[str] = PAPER_ATTACKS + ADAPTIVE_ATTACKS,
    n_per_class: int = 100,
    slow_n_per_class: int | None = None,
    eps: float = attack_zoo.EPS,
    directions: int = 15,
    radius: float = 6.0,
    space: str = "normalized",
    seed: int | None = None,
    model_name: str = "",
    overrides: dict[str, dict[str, Any]] | None = None,
    device: str | torch.device = "cpu",
) -> Evaluation:
    """Both protocols on the first ``n_per_class`` images of each class of ``split``.

    The attacks in :data:`SLOW_ATTACKS` use the first ``slow_n_per_class`` images per class
    (default: ``n_per_class``). ``attacks`` in :data:`PAPER_ATTACKS` go to protocol 1, those in
    :data:`ADAPTIVE_ATTACKS` to protocol 2. ``overrides`` changes an attack's settings
    (:data:`veilnet.robust.attacks.SETTINGS`).
    """
    for name in attacks:
        attack_zoo.create(name, model)  # validates the name
    seed = _seed(seed)
    slow_n = n_per_class if slow_n_per_class is None else min(slow_n_per_class, n_per_class)
    model = model.to(device).eval()
    defended = defend(model, directions=directions, radius=radius, space=space, seed=seed)
    settings = {name: {**attack_zoo.SETTINGS[name], **(overrides or {}).get(name, {})} for name in attacks}
    subsets = {n: vdata.subset(split, n) for n in {n_per_class, slow_n}}
    clean: dict[int, torch.Tensor] = {}

    def defended_clean(n: int) -> torch.Tensor:
        if n not in clean:
            clean[n] = predict(defended, subsets[n].images, device=device).argmax(1)
        return clean[n]

    paper, adaptive = [], []
    for name in attacks:
        n = slow_n if name in SLOW_ATTACKS else n_per_class
        sub = subsets[n]
        if name in ADAPTIVE_ATTACKS:
            attack = attack_zoo.create(name, defended, eps, seed=seed, progress=True, device=device, **settings[name])
            adaptive.append(adaptive_protocol(defended, sub.images, sub.labels, attack, defended_clean=defended_clean(n)))
        else:
            attack = attack_zoo.create(name, model, eps, seed=seed, progress=True, device=device, **settings[name])
            paper.append(paper_protocol(model, defended, sub.images, sub.labels, attack, defended_clean=defended_clean(n), name=name))
    return Evaluation(
        model=model_name,
        data=split.spec,
        n_per_class=n_per_class,
        slow_n_per_class=slow_n,
        eps=eps,
        defence={"name": "postavg", "directions": directions, "radius": radius, "space": space, "reduce": "softmax"},
        seed=seed,
        settings=settings,
        paper=paper,
        adaptive=adaptive,
    )


def sweep(
    model: nn.Module,
    split: vdata.ImageSplit,
    grid: dict[str, Sequence[float]],
    *,
    attack: str = "pgd-min",
    n_per_class: int = 10,
    eps: float = attack_zoo.EPS,
    directions: int = 15,
    radius: float = 6.0,
    space: str = "normalized",
    seed: int | None = None,
    model_name: str = "",
    device: str | torch.device = "cpu",
) -> list[Sweep]:
    """Defence against ``attack``'s adversarials (made on ``model`` once) for each value of each
    parameter in ``grid`` (``radius`` and/or ``directions``), the other held at its argument.

    Time per image is that of the defended model's forward passes on the clean images, batched;
    ``plain_seconds_per_image`` is the undefended model's, measured in the same run.
    """
    for parameter in grid:
        if parameter not in ("radius", "directions"):
            raise ConfigError(f"sweep parameter must be radius or directions, got {parameter!r}")
    seed = _seed(seed)
    sub = vdata.subset(split, n_per_class)
    images, labels = as_float(sub.images), sub.labels
    model = model.to(device).eval()
    made = attack_zoo.create(attack, model, eps, seed=seed, device=device, progress=True)
    correct = (predict(model, images, device=device).argmax(1) == labels).nonzero()[:, 0]
    adv, success = made(images[correct], labels[correct])
    adversarials, adv_labels = adv[success], labels[correct[success]]
    plain = _timed(lambda: predict(model, images, device=device))[1] / len(labels)
    results = []
    for parameter, values in grid.items():
        clean_acc, rates, times = [], [], []
        for value in values:
            kwargs = {"directions": directions, "radius": radius, "space": space, parameter: int(value) if parameter == "directions" else float(value)}
            defended = defend(model, seed=seed, **kwargs)  # type: ignore[arg-type]
            logits, seconds = _timed(lambda: predict(defended, images, batch_size=100, device=device))
            clean_acc.append((logits.argmax(1) == labels).float().mean().item())
            times.append(seconds / len(labels))
            rates.append((predict(defended, adversarials, device=device).argmax(1) == adv_labels).float().mean().item() if len(adv_labels) else float("nan"))
        fixed = {"directions": directions, "radius": radius, "space": space, "eps": eps}
        fixed.pop(parameter)
        results.append(
            Sweep(
                model=model_name, parameter=parameter, values=[float(v) for v in values], fixed=fixed, attack=attack, n=len(labels),
                num_adversarial=len(adv_labels), seed=seed, clean_accuracy=clean_acc, defence_rate=rates, seconds_per_image=times,
                plain_seconds_per_image=plain,
            )  # fmt: skip
        )
    return results


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _seed(seed: int | None) -> int:
    return int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else seed


# -- reports ------------------------------------------------------------------------------------


def paper_table(evaluation: Evaluation, *, with_paper: bool = True) -> str:
    """Table 1's layout, with the paper's CIFAR-10 figures in adjacent columns when ``with_paper``."""
    headers = ["attack", "n", "clean", "attacked", "defended clean", "defended attacked", "defence rate", "#Adv"]
    if with_paper:
        headers += ["paper: defended clean", "paper: defence rate", "paper: #Adv/n"]
    rows = []
    for row in evaluation.paper:
        cells: list[Any] = [row.attack, row.n, row.clean_accuracy, row.attacked_accuracy, row.defended_clean_accuracy, row.defended_attacked_accuracy, row.defence_rate, row.num_adversarial]
        if with_paper:
            ref = PAPER_CIFAR10.get(attack_zoo.VARIANT_OF.get(row.attack, row.attack), {})
            cells += [ref.get("defended_clean_accuracy", "-"), ref.get("defence_rate", "-"), ref["num_adversarial"] / 10000 if ref else "-"]
        rows.append(cells)
    return markdown_table(headers, rows)


def adaptive_table(evaluation: Evaluation) -> str:
    headers = ["attack (on the defended model)", "n", "defended clean", "robust accuracy", "attack success", "seconds", "paper / attack authors"]
    rows = [
        [r.attack, r.n, r.defended_clean_accuracy, r.robust_accuracy, r.attack_success_rate, round(r.seconds, 1), SQUARE_PAPER_ROBUST_ACCURACY if r.attack == "square" else "-"]
        for r in evaluation.adaptive
    ]
    return markdown_table(headers, rows)


def sweep_table(result: Sweep) -> str:
    headers = [result.parameter, "defended clean", "defence rate", "ms / image", "× plain"]
    rows = [[v, c, d, round(t * 1e3, 2), round(t / result.plain_seconds_per_image, 1)] for v, c, d, t in zip(result.values, result.clean_accuracy, result.defence_rate, result.seconds_per_image)]
    return markdown_table(headers, rows)


def write_report(out_dir: str | Path, evaluation: Evaluation | None = None, sweeps: Sequence[Sweep] = ()) -> Path:
    """JSON for every result, ``report.md`` with the tables and a PNG plot per sweep; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    if evaluation is not None:
        evaluation.save(out / "evaluation.json")
        d = evaluation.defence
        parts.append(
            f"# Post-averaging: {evaluation.model} on {evaluation.data}\n\n"
            f"Defence: K = {d['directions']}, r = {d['radius']} ({d['space']} space); ε = {evaluation.eps:.5g} (L∞); "
            f"first {evaluation.n_per_class} images per class ({evaluation.slow_n_per_class} for {', '.join(SLOW_ATTACKS)}); seed {evaluation.seed}.\n"
        )
        if evaluation.paper:
            parts.append("## Paper protocol (attacks on the undefended model; Table 1)\n\n" + paper_table(evaluation) + "\n")
        if evaluation.adaptive:
            parts.append("## Adaptive protocol (attacks on the defended model)\n\n" + adaptive_table(evaluation) + "\n")
        parts.append("Settings: " + ", ".join(f"{k} {v}" for k, v in evaluation.settings.items()) + "\n")
    for result in sweeps:
        result.save(out / f"sweep-{result.parameter}.json")
        plot_sweep(result, out / f"sweep-{result.parameter}.png")
        parts.append(
            f"## Sweep over {result.parameter} ({result.attack} adversarials, n = {result.n}, #Adv = {result.num_adversarial}, {result.fixed})\n\n"
            + sweep_table(result)
            + f"\n\nPlain model: {result.plain_seconds_per_image * 1e3:.3f} ms / image. Plot: sweep-{result.parameter}.png\n"
        )
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report


def plot_sweep(result: Sweep, path: str | Path) -> Path:
    """Defence rate and clean accuracy against the swept parameter (and time per image for K)."""
    plt = plot_backend()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(result.values, result.defence_rate, "o-", label=f"defence rate ({result.attack})")
    ax.plot(result.values, result.clean_accuracy, "s--", label="defended clean accuracy")
    ax.set_xlabel("radius r" if result.parameter == "radius" else "directions K")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower left")
    if result.parameter == "directions":
        twin = ax.twinx()
        twin.plot(result.values, [t * 1e3 for t in result.seconds_per_image], "^:", color="gray")
        twin.set_ylabel("ms per image", color="gray")
    ax.set_title(f"post-averaging: {result.model} (n = {result.n})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)



def demo_step(model: nn.Module, split: vdata.ImageSplit, out_dir: str | Path, *, n_per_class: int = 10, seed: int = 0) -> dict[str, Any]:
    """The robustness step of ``veilnet demo``: the paper's protocol with FGSM and PGD at the full
    budget and FGSM at the smallest one (the paper's setting) on the first ``n_per_class`` test
    images per class, K = 15, r = 6; writes ``out_dir/report.md`` and returns the rows as a dict.
    Takes a few seconds on a small model."""
    evaluation = evaluate(model, split, attacks=("fgsm", "pgd", "fgsm-min"), n_per_class=n_per_class, seed=seed, model_name="demo")
    report = write_report(out_dir, evaluation)
    return {"report": str(report), "n": evaluation.paper[0].n, "rows": [row.to_dict() for row in evaluation.paper]}
