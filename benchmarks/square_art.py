"""Our Square attack against ART's ``SquareAttack`` on the undefended pretrained ResNet-20 (issue 13,
part 2): L∞, ε = 8/255, p_init = 0.05, at equal numbers of queries.

    python benchmarks/square_art.py [--n-per-class 10] [--queries 100,300,1000]

The first N JPEG CIFAR-10 test images of each class (class-balanced: the data is stored sorted by
class), attacked by both tools; success rates are over the images the model classifies
correctly. A budget of Q queries is our ``queries=Q`` (the initialisation's query included) and
ART's ``max_iter=Q − 1`` (ART also spends one query on its initialisation). Each budget is a
separate run, since the p schedule is rescaled to the budget by both tools. ART draws one window
for all the images of a call, so it is called on 20 images at a time (each call drawing its own
windows); otherwise its success on one run moves by several points with the seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import CIFAR_ZIP, MODELS, markdown_table, write_result
from veilnet import data
from veilnet.metrics import as_float, predict
from veilnet.models import load_cifar_resnet
from veilnet.robust import attacks

EPS = 8 / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=10)
    parser.add_argument("--queries", default="100,300,1000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    model = load_cifar_resnet(MODELS / "resnet20-12fca82f.th").eval()
    split = data.subset(data.load(f"folder:{CIFAR_ZIP}", split="test"), args.n_per_class)
    x, y = as_float(split.images), split.labels
    right = predict(model, x).argmax(1) == y
    x, y = x[right], y[right]
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0))
    rows, out = [], {"n": len(split.labels), "attacked": len(y), "eps": EPS, "seed": args.seed, "runs": []}
    for queries in (int(q) for q in args.queries.split(",")):
        start = time.perf_counter()
        ours = attacks.Square(model, EPS, queries=queries, p_init=0.05, seed=args.seed, batch_size=len(y))(x, y)[1].float().mean().item()
        t_ours = time.perf_counter() - start
        np.random.seed(args.seed)
        start = time.perf_counter()
        art = SquareAttack(classifier, norm=np.inf, max_iter=queries - 1, eps=EPS, p_init=0.05, nb_restarts=1, verbose=False)
        adv = np.concatenate([art.generate(x[i : i + 20].numpy(), y[i : i + 20].numpy()) for i in range(0, len(y), 20)])
        t_art = time.perf_counter() - start
        theirs = (predict(model, attacks.project(torch.from_numpy(adv).float(), x, EPS)).argmax(1) != y).float().mean().item()
        out["runs"].append({"queries": queries, "ours": ours, "art": theirs, "seconds_ours": t_ours, "seconds_art": t_art})
        rows.append([queries, f"{ours:.3f}", f"{theirs:.3f}", f"{(ours - theirs) * 100:+.1f}", f"{t_ours:.0f} / {t_art:.0f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["queries", "success, ours", "success, ART", "ours − ART (points)", "seconds ours / ART"], rows)
    print(f"ResNet-20, {len(y)} of {len(split.labels)} images correctly classified, ε = 8/255\n\n{table}")
    print(f"wrote {write_result('square_art', out)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
