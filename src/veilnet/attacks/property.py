"""Property inference: what the features a server sees reveal about a *hidden* property of the
input — Xiang et al., "Interpretable Complex-Valued Neural Networks for Privacy Protection"
(ICLR 2020), section 4.3 ("Property inference attacks", after Ganju et al., 2018), section 5.1
("Attacks", (2) Inference attacks), Fig. 3 and Table 5.

A *property* is an input attribute the features are not meant to release. The network is trained
for a task; the hidden property is another labelling of the same images: on CIFAR-100 the task is
the 20 superclasses and the hidden property the 100 classes (the paper's setting); on CIFAR-10
the task can be :func:`animal_vs_vehicle` and the hidden property the 10 classes.

Threat model (issue 11, the paper's section 3): the adversary is the server or an eavesdropper.
It trains its attack models on *its own* images (by convention the data set's ``train`` split),
whose hidden-property labels it knows, and tests them on the victim's images (the ``test``
split, disjoint from its own), whose labels it does not see. Everything here is generic over the
features: raw or reconstructed images, a split network's activations, a complex network's
``a* = Re[x·e^{−iθ̂}]``, keyed images — any tensor with one row per image.

The paper's four strategies (section 4.3), each a call here:

* **inference attack 1** — a classifier trained on the attacker's raw images, applied to the
  reconstructions ``dec(a*)`` of inversion attack 1 (a learned inverter,
  :func:`veilnet.attacks.inversion.reconstruct`): :func:`train_property_classifier` on
  the images, then :func:`classifier_attack` with ``classifier=`` and the reconstructions as
  test inputs;
* **inference attack 2** — a classifier trained and tested on ``a*``:
  :func:`classifier_attack` on the attacker's ``a*`` and the victim's;
* **inference attack 3** — a classifier trained and tested on ``dec(a*)``:
  :func:`classifier_attack` on the attacker's reconstructions and the victim's;
* **inference attack 4** — the k nearest neighbours of the victim's ``a*`` among the attacker's
  features, k = 1, 3, 5, and a majority vote over their hidden labels: :func:`knn_attack`.

Metric (section 5.2): the error rate on the hidden property over the victim's images,
:attr:`PropertyResult.error`, beside :attr:`PropertyResult.chance_error`, the error of always
guessing the most frequent hidden class of the victim's labels (0.9 for 10 balanced classes,
0.99 for 100 — the paper's "random selection (99%)" on CIFAR-100). An attack that does not beat
chance has learnt nothing about the property.

The paper's Table 5 (hidden-property error rates of k-NN, 1-/3-/5-NN):

=========  ========================  ======  ======  ======
data       network                   1-NN    3-NN    5-NN
=========  ========================  ======  ======  ======
CelebA     with additional layers    0.2014  0.1726  0.162
CelebA     complex-valued            0.3169  0.2790  0.2641
CIFAR-100  with additional layers    0.7338  0.6837  0.7116
CIFAR-100  complex-valued            0.9444  0.9363  0.925
=========  ========================  ======  ======  ======

The paper's attacker networks were a ResNet-50 (CelebA) and a ResNet-56 (CIFAR-100); the
classifier here is a small CNN (or an MLP for vector features), the same for every feature, so
the attacks compare features rather than attacker capacities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from veilnet.attacks.inversion import as_unet_input
from veilnet.errors import ConfigError, ShapeError
from veilnet.report import Result

__all__ = [
    "PropertyClassifier",
    "PropertyResult",
    "animal_vs_vehicle",
    "chance_error",
    "classifier_attack",
    "knn_attack",
    "knn_predict",
    "predict_property",
    "train_property_classifier",
]

#: CIFAR-10's animal classes (bird, cat, deer, dog, frog, horse); the rest (airplane,
#: automobile, ship, truck) are vehicles.
CIFAR10_ANIMALS = (2, 3, 4, 5, 6, 7)


@dataclass(frozen=True)
class PropertyResult(Result):
    """One property inference attack on one kind of features.

    ``attack`` names it (``"inference 2"``, ``"inference 4 (5-NN)"``, …), ``features`` says
    what the attacker's model saw (``"a* = Re[x·e^{−iθ̂}]"``, ``"raw images"``, …); ``error`` is
    its error rate on the hidden property over the victim's ``n`` images and ``chance_error``
    that of always guessing the victim's most frequent hidden class (:func:`chance_error`);
    ``num_classes`` the hidden property's classes; ``n_attacker`` the attacker's training inputs;
    ``attacker_split`` / ``victim_split`` name the disjoint image sets; ``seed`` seeds the
    attack; ``k`` the neighbours of a k-NN attack (None for a classifier); ``config`` its
    settings."""

    attack: str
    features: str
    error: float
    chance_error: float
    num_classes: int
    n: int
    n_attacker: int
    attacker_split: str
    victim_split: str
    seed: int
    k: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def beats_chance(self) -> bool:
        """The attack's error is below always guessing the most frequent hidden class."""
        return self.error < self.chance_error


# --------------------------------------------------------------------------------------------
# Labels


def animal_vs_vehicle(labels: torch.Tensor) -> torch.Tensor:
    """CIFAR-10's task labels for the property setting: 1 for the animal classes (bird, cat, deer,
    dog, frog, horse = 2–7), 0 for the vehicles (airplane, automobile, ship, truck = 0, 1, 8, 9).
    ``labels`` holds CIFAR-10 class indices; others raise :class:`ConfigError`."""
    labels = _check_labels(labels, "CIFAR-10 labels")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ConfigError(f"CIFAR-10 labels must lie in 0..9, got values from {int(labels.min())} to {int(labels.max())}")
    return ((labels >= CIFAR10_ANIMALS[0]) & (labels <= CIFAR10_ANIMALS[-1])).long()


def chance_error(labels: torch.Tensor, num_classes: int | None = None) -> float:
    """``1 − max_c P(label = c)`` over ``labels``: the error of always guessing the most frequent
    class (0.9 for 10 balanced classes)."""
    labels = _check_labels(labels, "labels")
    if labels.numel() == 0:
        raise ShapeError("no labels (N = 0)")
    counts = torch.bincount(labels, minlength=num_classes or 0)
    return 1.0 - float(counts.max()) / labels.numel()


def _check_labels(labels: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ShapeError(f"{what} must be a 1-D integer tensor, got {shape}{' of ' + str(labels.dtype) if isinstance(labels, torch.Tensor) else ''}")
    labels = labels.long().cpu()
    if labels.numel() and int(labels.min()) < 0:
        raise ConfigError(f"{what} must be non-negative class indices, got {int(labels.min())}")
    return labels


def _check_inputs(inputs: torch.Tensor, labels: torch.Tensor, who: str) -> torch.Tensor:
    """Inputs with one row per label; returns the labels as int64 on the CPU."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
        raise ShapeError(
            f"the {who}'s inputs must be a tensor N×… with one row per image, got "
            f"{tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__}"
        )
    if inputs.shape[0] == 0:
        raise ShapeError(f"the {who} has no inputs (N = 0)")
    if not (inputs.dtype == torch.uint8 or inputs.is_floating_point()):
        raise ShapeError(f"the {who}'s inputs must be uint8 or floating point, got {inputs.dtype}")
    labels = _check_labels(labels, f"the {who}'s labels")
    if labels.shape[0] != inputs.shape[0]:
        raise ShapeError(f"the {who} has {inputs.shape[0]} inputs but {labels.shape[0]} labels")
    return labels


def _num_classes(num_classes: int | None, *label_sets: torch.Tensor) -> int:
    top = max(int(labels.max()) for labels in label_sets) + 1
    if num_classes is None:
        num_classes = top
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"a hidden property needs num_classes >= 2, got {num_classes!r}")
    if top > num_classes:
        raise ConfigError(f"labels out of range: class {top - 1} with num_classes = {num_classes}")
    return num_classes


def _as_float(inputs: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → [0, 1]; float features unchanged; then folded like the U-Net's input."""
    x = inputs.float().div_(255.0) if inputs.dtype == torch.uint8 else inputs.float()
    return as_unet_input(x)


# --------------------------------------------------------------------------------------------
# The classifier (inference attacks 1–3)


class PropertyClassifier(nn.Module):
    """The attacker's classifier of a hidden property: inputs of one shape (images, feature maps,
    pair tensors, vectors) → logits over ``num_classes``.

    The forward takes raw inputs of the shape it was trained on (``N×input_shape``): uint8 images
    become [0, 1], a pair tensor ``N×2×K×h×w`` is folded into ``N×2K×h×w``
    (:func:`~veilnet.attacks.inversion.as_unet_input`), and the result is standardised,
    ``(x − μ)/σ`` with the per-channel mean μ and standard deviation σ of the attacker's
    training inputs (per dimension for vectors; σ = 1 where a channel is constant). Then a
    small CNN — blocks of 3×3 conv + BatchNorm + ReLU (widths ``width``, 2·``width``,
    4·``width``), each followed by 2×2 max pooling while the map is at least 2×2 —, global
    average pooling and a linear head; for vectors an MLP (two hidden layers of 8·``width``).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, mean: torch.Tensor, std: torch.Tensor, *, width: int = 32, n_train: int = 0) -> None:
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.n_train = int(n_train)
        folded = _as_float(torch.zeros((1, *self.input_shape))).shape[1:]
        self.register_buffer("mean", mean.reshape(1, -1, *([1] * (len(folded) - 1))).float().clone())
        self.register_buffer("std", std.reshape(1, -1, *([1] * (len(folded) - 1))).float().clone())
        if len(folded) == 3:
            c, h, w = folded
            layers: list[nn.Module] = []
            for out_c in (width, 2 * width, 4 * width):
                layers += [nn.Conv2d(c, out_c, 3, padding=1, bias=False), nn.BatchNorm2d(out_c), nn.ReLU(inplace=True)]
                if min(h, w) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
                c = out_c
            self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        else:
            hidden = 8 * width
            self.body = nn.Sequential(
                nn.Linear(folded[0], hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if tuple(inputs.shape[1:]) != self.input_shape:
            raise ShapeError(f"the property classifier was trained on inputs N×{'×'.join(map(str, self.input_shape))}, got {tuple(inputs.shape)}")
        return self.body((_as_float(inputs) - self.mean) / self.std)


def _channel_stats(inputs: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (dim 1 after folding) mean and standard deviation, in float64, in batches."""
    total = None
    sq = None
    count = 0
    for i in range(0, inputs.shape[0], batch_size):
        x = _as_float(inputs[i : i + batch_size]).double()
        dims = [0, *range(2, x.ndim)]
        s, s2 = x.sum(dims), x.square().sum(dims)
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += x.numel() // x.shape[1]
    mean = total / count
    std = (sq / count - mean.square()).clamp_min(0).sqrt()
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ShapeError("the attacker's inputs hold NaN or infinite values")
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    return mean, std


def train_property_classifier(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PropertyClassifier:
    """Train the attacker's :class:`PropertyClassifier` on its own ``(inputs, labels)``: the
    inputs are images (``N×C×H×W``, uint8 or float in [0, 1]) or features of any shape (a pair
    tensor ``N×2×K×h×w``, feature maps ``N×C×h×w`` → the CNN; vectors ``N×D`` → the MLP),
    ``labels`` the hidden property's classes ``0..num_classes−1``.

    Cross-entropy, Adam at ``lr``, ``epochs`` passes in batches of ``batch_size``; the initial
    weights and the batch order come from ``seed`` (the global RNG is left as it was). The loop
    is :func:`veilnet.training.fit` in memory. Returns the classifier in eval mode.
    """
    from veilnet.devices import resolve_device
    from veilnet.training import fit

    labels = _check_inputs(inputs, labels, "attacker")
    num_classes = _num_classes(num_classes, labels)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"property classifier option {name} must be a positive integer, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"property classifier option lr must be a positive number, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if _as_float(inputs[:1]).ndim not in (2, 4):
        raise ShapeError(f"property classifier inputs must fold to N×C×H×W or N×D, got {tuple(inputs.shape)}")
    dev = resolve_device(device)
    mean, std = _channel_stats(inputs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PropertyClassifier(inputs.shape[1:], num_classes, mean, std, width=width, n_train=inputs.shape[0]).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    n = inputs.shape[0]

    def batches(epoch: int) -> list[torch.Tensor]:
        chunks = list(torch.randperm(n, generator=order).split(batch_size))
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # BatchNorm needs two samples per batch
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks

    def step(idx: torch.Tensor, info: Any) -> dict[str, float]:
        model.train()
        logits = model(inputs[idx].to(dev))
        target = labels[idx].to(dev)
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "accuracy": (logits.argmax(1) == target).float().mean().item(), "n": len(idx)}

    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "width": width, "seed": seed, "num_classes": num_classes}
    fit(
        step,
        batches,
        epochs=epochs,
        state={"classifier": model, "optimizer": optimizer, "order": order},
        config=config,
        progress=progress,
        desc="property classifier",
    )
    return model.eval()


@torch.no_grad()
def predict_property(classifier: nn.Module, inputs: torch.Tensor, *, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """The classifier's predicted class (argmax of its logits) for each input, in batches, in
    eval mode; an int64 tensor on the CPU."""
    classifier.eval()
    dev = torch.device(device)
    if inputs.shape[0] == 0:
        raise ShapeError("no inputs to classify (N = 0)")
    return torch.cat([classifier(inputs[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, inputs.shape[0], batch_size)])


def classifier_attack(
    attack: str,
    features: str,
    train_inputs: torch.Tensor | None,
    train_labels: torch.Tensor | None,
    test_inputs: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int | None = None,
    classifier: nn.Module | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[PropertyResult, nn.Module]:
    """Inference attacks 1–3 (section 4.3): a classifier of the hidden property trained on the
    attacker's ``(train_inputs, train_labels)`` (:func:`train_property_classifier`), scored on
    the victim's ``(test_inputs, test_labels)``.

    With ``classifier`` given it is not trained again (inference attack 1: a classifier trained
    on the attacker's raw images, tested on ``dec(a*)``); ``train_inputs``/``train_labels`` may
    then be None and only count the attacker's inputs (else the classifier's ``n_train``).
    ``num_classes`` defaults to the classifier's, else to the largest label + 1.
    Returns the :class:`PropertyResult` and the classifier.
    """
    test_labels = _check_inputs(test_inputs, test_labels, "victim")
    if classifier is None:
        if train_inputs is None or train_labels is None:
            raise ConfigError("a classifier attack needs the attacker's inputs and labels, or a trained classifier")
        train_labels = _check_inputs(train_inputs, train_labels, "attacker")
        if train_inputs.shape[1:] != test_inputs.shape[1:]:
            raise ShapeError(
                f"the attacker's inputs N×{'×'.join(map(str, train_inputs.shape[1:]))} and "
                f"the victim's N×{'×'.join(map(str, test_inputs.shape[1:]))} differ in shape"
            )
        num_classes = _num_classes(num_classes, train_labels, test_labels)
        classifier = train_property_classifier(
            train_inputs,
            train_labels,
            num_classes=num_classes,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            width=width,
            seed=seed,
            device=device,
            progress=progress,
        )
        config: dict[str, Any] = {
            "classifier": "cnn" if _as_float(train_inputs[:1]).ndim == 4 else "mlp",
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "width": width,
        }
        n_attacker = int(train_inputs.shape[0])
    else:
        num_classes = _num_classes(num_classes if num_classes is not None else getattr(classifier, "num_classes", None), test_labels)
        if train_labels is not None:
            n_attacker = int(_check_labels(train_labels, "the attacker's labels").shape[0])
        elif train_inputs is not None:
            n_attacker = int(train_inputs.shape[0])
        else:
            n_attacker = int(getattr(classifier, "n_train", 0))
        config = {"classifier": "given"}
    predictions = predict_property(classifier, test_inputs, device=device)
    result = PropertyResult(
        attack=attack,
        features=features,
        error=float((predictions != test_labels).double().mean()),
        chance_error=chance_error(test_labels, num_classes),
        num_classes=num_classes,
        n=int(test_inputs.shape[0]),
        n_attacker=n_attacker,
        attacker_split=attacker_split,
        victim_split=victim_split,
        seed=seed,
        config=config,
    )
    return result, classifier


# --------------------------------------------------------------------------------------------
# k nearest neighbours (inference attack 4)


def _check_ks(ks: Sequence[int], n_attacker: int) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ConfigError("k-NN needs at least one k")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if k > n_attacker:
            raise ConfigError(f"k = {k} exceeds the attacker's {n_attacker} training features")
    return ks


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    ks: Sequence[int] = (1, 3, 5),
    num_classes: int | None = None,
    batch_size: int = 256,
    chunk_bytes: int = 1 << 28,
    device: str | torch.device = "cpu",
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """The k-NN vote for each test feature: ``({k: predicted labels}, neighbour indices)``.

    Distance: Euclidean on the flattened features, each dimension standardised by the mean and
    standard deviation of the attacker's training features (σ = 1 for a constant dimension, as
    scikit-learn's ``StandardScaler``) — the paper does not say which distance its k-NN used;
    standardising keeps one large-valued channel from deciding alone. Distances in float64;
    neighbours sorted by distance, equal distances by training index. Vote: the most frequent
    label among the k nearest; a tie goes to the tied class of the nearest neighbour.

    Memory stays bounded: ``batch_size`` test rows at a time against training chunks of at most
    ``chunk_bytes`` (in float64). Returns the predictions (int64, CPU) per k and the indices of
    each test feature's ``max(ks)`` nearest training features (``N×max(ks)``, nearest first).
    """
    train_labels = _check_inputs(train_features, train_labels, "attacker")
    n_attacker = int(train_features.shape[0])
    ks = _check_ks(ks, n_attacker)
    if not isinstance(test_features, torch.Tensor) or test_features.ndim < 2 or test_features.shape[0] == 0:
        raise ShapeError(
            f"the victim's features must be a non-empty tensor N×…, got "
            f"{tuple(test_features.shape) if isinstance(test_features, torch.Tensor) else type(test_features).__name__}"
        )
    if train_features.shape[1:] != test_features.shape[1:]:
        raise ShapeError(
            f"the attacker's features N×{'×'.join(map(str, train_features.shape[1:]))} and "
            f"the victim's N×{'×'.join(map(str, test_features.shape[1:]))} differ in shape"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    num_classes = _num_classes(num_classes, train_labels) if num_classes is not None else max(int(train_labels.max()) + 1, 2)
    dev = torch.device(device)
    train = train_features.flatten(1)
    dim = train.shape[1]
    chunk = max(1, chunk_bytes // (8 * max(dim, 1)))
    starts = range(0, n_attacker, chunk)
    mean = sum(train[i : i + chunk].double().sum(0) for i in starts) / n_attacker
    std = (sum((train[i : i + chunk].double() - mean).square().sum(0) for i in starts) / n_attacker).sqrt()
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ShapeError("the attacker's features hold NaN or infinite values")
    std = torch.where(std > 0, std, torch.ones_like(std))
    mean, std = mean.to(dev), std.to(dev)
    # One chunk (the usual case) is standardised once; more are standardised per test batch.
    whole = (train.to(dev).double() - mean) / std if n_attacker <= chunk else None
    kmax = max(ks)
    neighbours = []
    for start in range(0, test_features.shape[0], batch_size):
        query = (test_features[start : start + batch_size].flatten(1).to(dev).double() - mean) / std
        if not torch.isfinite(query).all():
            raise ShapeError("the victim's features hold NaN or infinite values")
        best_d = torch.empty((query.shape[0], 0), dtype=torch.float64, device=dev)
        best_i = torch.empty((query.shape[0], 0), dtype=torch.long, device=dev)
        for offset in starts:
            ref = whole if whole is not None else (train[offset : offset + chunk].to(dev).double() - mean) / std
            d = torch.cdist(query, ref)
            idx = torch.arange(offset, offset + ref.shape[0], device=dev).expand_as(d)
            # Earlier indices first, so the stable sort breaks equal distances by index.
            d, idx = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
            order = torch.sort(d, dim=1, stable=True).indices[:, :kmax]
            best_d, best_i = d.gather(1, order), idx.gather(1, order)
        neighbours.append(best_i.cpu())
    indices = torch.cat(neighbours)
    voters = train_labels[indices]  # N×kmax, nearest first
    predictions = {}
    for k in ks:
        votes = voters[:, :k]
        counts = F.one_hot(votes, num_classes).sum(1)  # N×classes
        tied = counts == counts.max(1, keepdim=True).values
        first = tied.gather(1, votes).int().argmax(1, keepdim=True)  # nearest neighbour of a tied class
        predictions[k] = votes.gather(1, first).squeeze(1)
    return predictions, indices


def knn_attack(
    attack: str,
    features: str,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    ks: Sequence[int] = (1, 3, 5),
    num_classes: int | None = None,
    attacker_split: str = "train",
    victim_split: str = "test",
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> list[PropertyResult]:
    """Inference attack 4 (section 4.3): each victim feature's k nearest neighbours among the
    attacker's training features (:func:`knn_predict`: Euclidean distance on the flattened
    features standardised per dimension by the attacker's training statistics — the paper does
    not specify the distance —, majority vote, ties to the nearest neighbour's class), for each
    k in ``ks`` (the paper's 1, 3, 5). ``attack`` is the name's stem: the results are named
    ``f"{attack} ({k}-NN)"``. The attack draws nothing at random; ``seed`` is recorded only.
    Returns one :class:`PropertyResult` per k, ``k`` set."""
    test_labels = _check_inputs(test_features, test_labels, "victim")
    train_labels = _check_inputs(train_features, train_labels, "attacker")
    num_classes = _num_classes(num_classes, train_labels, test_labels)
    predictions, _ = knn_predict(train_features, train_labels, test_features, ks=ks, num_classes=num_classes, batch_size=batch_size, device=device)
    chance = chance_error(test_labels, num_classes)
    return [
        PropertyResult(
            attack=f"{attack} ({k}-NN)",
            features=features,
            error=float((pred != test_labels).double().mean()),
            chance_error=chance,
            num_classes=num_classes,
            n=int(test_features.shape[0]),
            n_attacker=int(train_features.shape[0]),
            attacker_split=attacker_split,
            victim_split=victim_split,
            seed=seed,
            k=k,
            config={"distance": "euclidean, standardised per dimension by the attacker's statistics", "batch_size": batch_size},
        )
        for k, pred in predictions.items()
    ]
