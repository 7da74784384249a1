"""The privacy benchmark's task and the hidden attribute it does not need.

Property inference only means something for an attribute the task's answer does not already give
away: on CIFAR-10's ten classes "animal or vehicle" is a function of the label, so every useful
feature carries it. The benchmark therefore trains every row on a **reduced task** — the first half
of the classes against the second — and asks the attacker for a **hidden attribute** that cuts
across it:

* CIFAR-10: task = {airplane, automobile, bird, cat, deer} against {dog, frog, horse, ship, truck};
  hidden = animal or vehicle. Each half holds two vehicle classes and three animal classes, so on
  balanced data the task's label says nothing about the attribute (40 % vehicles either way).
* any other data set (the embedded digits): task = the first half of the classes against the
  second; hidden = the parity of the class index (digits: odd or even digit).

The attacker's accuracy on the hidden attribute is reported beside :meth:`PrivacyTask.chance` — the
best accuracy of a guess from the *task's* label alone (on CIFAR-10 and the digits: 0.6, the
majority within each half) — since that much leaks through any correct answer of the task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from veilnet.data import ImageSplit
from veilnet.errors import ConfigError
from veilnet.report import Result

#: CIFAR-10's classes in their order and the vehicles among them.
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
VEHICLES = frozenset({"airplane", "automobile", "ship", "truck"})


@dataclass(frozen=True)
class PrivacyTask(Result):
    """The reduced task and the hidden attribute over a data set's classes: ``task_of[c]`` and
    ``hidden_of[c]`` are class ``c``'s task label and hidden label, named by ``task_classes`` and
    ``hidden_classes``; ``described`` says both in words."""

    classes: list[str]
    task_classes: list[str]
    task_of: list[int]
    hidden: str
    hidden_classes: list[str]
    hidden_of: list[int]
    described: str

    def task_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The task's label of each class label."""
        return torch.tensor(self.task_of, dtype=torch.long)[labels]

    def hidden_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The hidden attribute of each class label."""
        return torch.tensor(self.hidden_of, dtype=torch.long)[labels]

    def chance(self, labels: torch.Tensor) -> float:
        """The best accuracy on the hidden attribute of any guess made from the task's label alone
        (the majority hidden value within each task class) over the images of ``labels``."""
        task, hidden = self.task_labels(labels), self.hidden_labels(labels)
        right = sum(int(torch.bincount(hidden[task == t], minlength=len(self.hidden_classes)).max()) for t in task.unique())
        return right / max(1, labels.numel())

    def apply(self, split: ImageSplit) -> ImageSplit:
        """``split`` with the task's labels and class names instead of the classes'."""
        return ImageSplit(split.images, self.task_labels(split.labels), list(self.task_classes), spec=split.spec, split=split.split)


def privacy_task(classes: list[str]) -> PrivacyTask:
    """The task and hidden attribute for a data set with these class names (see the module docstring)."""
    k = len(classes)
    if k < 4:
        raise ConfigError(f"the privacy benchmark needs at least 4 classes (two per half of the reduced task), got {k}")
    half = k // 2
    task_of = [int(c >= half) for c in range(k)]
    task_classes = [f"{classes[0]}–{classes[half - 1]}", f"{classes[half]}–{classes[-1]}"]
    if tuple(classes) == CIFAR10:
        hidden_of = [int(name in VEHICLES) for name in classes]
        return PrivacyTask(
            list(classes),
            task_classes,
            task_of,
            "animal or vehicle",
            ["animal", "vehicle"],
            hidden_of,
            "task: airplane–deer against dog–truck (two vehicle and three animal classes in each); hidden: animal or vehicle",
        )
    hidden_of = [c % 2 for c in range(k)]
    return PrivacyTask(
        list(classes),
        task_classes,
        task_of,
        "parity of the class index",
        ["even", "odd"],
        hidden_of,
        f"task: classes {task_classes[0]} against {task_classes[1]}; hidden: the parity of the class index",
    )


__all__ = ["PrivacyTask", "privacy_task"]
