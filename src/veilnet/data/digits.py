"""scikit-learn's handwritten digits (spec ``digits``), the data set that needs no files.

The 1,797 8×8 images (values 0..16) are scaled to 0..255, resized with bilinear interpolation
to ``size``×``size`` (default 32) and replicated to ``channels`` (default 3), so every CIFAR
model runs on them unchanged. Train/test is a fixed stratified 80/20 split (seed 0).
Options go after a colon: ``digits:size=16,channels=1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from veilnet.data.split import ImageSplit
from veilnet.errors import DataFormatError

TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: The largest ``size``, checked before the images are made: the 8×8 originals resized to
#: 256×256 already take 0.5 GB while they are resized.
MAX_SIZE = 256


class DigitsSource:
    """``digits[:size=N,channels=C]``."""

    kind = "digits"

    def __init__(self, options: str = "") -> None:
        values = {"size": 32, "channels": 3}
        for item in filter(None, (x.strip() for x in options.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in values or not value.isdigit():
                raise DataFormatError(f"digits: bad option {item!r}; expected size=N and/or channels=1|3, e.g. digits:size=32,channels=3")
            values[name] = int(value)
        if not 1 <= values["size"] <= MAX_SIZE or values["channels"] not in (1, 3):
            raise DataFormatError(f"digits: expected size from 1 to {MAX_SIZE} and channels 1 or 3, got size={values['size']}, channels={values['channels']}")
        self.size, self.channels = values["size"], values["channels"]
        self.label = f"digits-{self.size}-{self.channels}"

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "channels": self.channels}

    def stats(self, split: str) -> Any:
        import sklearn

        return {"sklearn": sklearn.__version__, "torch": torch.__version__.split("+")[0]}

    def read(self, split: str, spec: str) -> ImageSplit:
        from sklearn.datasets import load_digits

        digits = load_digits()
        labels = torch.from_numpy(digits.target.astype(np.int64))
        pixels = torch.from_numpy(digits.images).float().mul_(255.0 / 16.0).unsqueeze(1)
        pixels = F.interpolate(pixels, size=(self.size, self.size), mode="bilinear", align_corners=False)
        images = pixels.round_().clamp_(0, 255).to(torch.uint8).expand(-1, self.channels, -1, -1).contiguous()
        rng = np.random.default_rng(SPLIT_SEED)
        test = np.zeros(len(labels), dtype=bool)
        for label in range(10):
            idx = np.flatnonzero(digits.target == label)
            test[rng.permutation(idx)[: round(TEST_FRACTION * len(idx))]] = True
        mask = torch.from_numpy(test if split == "test" else ~test)
        return ImageSplit(images=images[mask], labels=labels[mask], classes=[str(d) for d in range(10)], spec=spec, split=split)
