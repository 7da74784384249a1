"""Cost of the complex-valued layers and networks against their real counterparts (issue 10: the
representation of veilnet.complex.layers; Xiang et al., ICLR 2020, Table 5's time per image).

    python benchmarks/complex_layers.py [--quick] [--threads 2]

1. Representations of one complex 16→16 3×3 convolution on a batch of N 16×32×32 maps, against
   the real convolution of the same shape: PyTorch's native complex64, four real convolutions,
   Gauss's three, one convolution of a doubled batch (weights [W_r; W_i]) and the one of
   :class:`veilnet.complex.layers.ComplexConv2d` (block weight [[W_r, −W_i], [W_i, W_r]] on the
   N×2C×H×W view of the pair tensor).
2. Each complex layer against the real layer it replaces (convolution, linear, δ of Eq. 6 for
   ReLU, the norm of Eq. 7 for BN, max-modulus pooling for max-pooling, dropout, the residual block).
3. Whole networks at batch N: the complex ResNet-20-α / LeNet (encode, Φ, decode) against the
   original real network cut the same way (paper Table 5: 0.0007 s vs 0.0004 s per image, 1.75×).

Each row is timed forward (no_grad; eval mode for section 3) and forward+backward (train mode,
gradients of the input and the weights). Variants of one row are timed interleaved — one
repetition of each in turn, after one warm-up of each — so the shared machine's noise falls on all
alike; the table gives the median over the repetitions and min–max, and the ratio of medians to
the real reference of the same row. ``--quick``: N = 32, 5 repetitions, section 3 on LeNet and
ResNet-20-α only at batch 32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from _common import markdown_table, write_result
from veilnet.complex import layers as cl
from veilnet.complex import models as cm
from veilnet.models.resnet_cifar import BasicBlock

Step = Callable[[], Any]


def interleaved(variants: dict[str, Step], repeats: int) -> dict[str, dict[str, float]]:
    """Seconds of each variant: one warm-up of each, then ``repeats`` rounds timing each once."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(t), "min": min(t), "max": max(t), "repeats": repeats} for name, t in times.items()}


def forward_backward(fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Step:
    """One forward and backward of ``fn`` (gradients of ``params`` cleared first)."""

    def step() -> None:
        for p in params:
            p.grad = None
        out = fn()
        (torch.view_as_real(out) if out.is_complex() else out).sum().backward()

    return step


def forward(fn: Callable[[], torch.Tensor]) -> Step:
    def step() -> None:
        with torch.no_grad():
            fn()

    return step


def conv_representations(n: int) -> dict[str, tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    """Section 1: name -> (computation, tensors that need gradients); the first is the reference."""
    c, side = 16, 32
    g = torch.Generator().manual_seed(0)
    xr, xi = (torch.randn(n, c, side, side, generator=g).requires_grad_() for _ in range(2))
    wr, wi = (torch.randn(c, c, 3, 3, generator=g).mul_(0.1).requires_grad_() for _ in range(2))
    z = torch.complex(xr.detach(), xi.detach()).requires_grad_()
    wz = torch.complex(wr.detach(), wi.detach()).requires_grad_()
    pair = torch.stack((xr.detach(), xi.detach()), 1).requires_grad_()
    leading = torch.stack((xr.detach(), xi.detach()), 0).requires_grad_()
    layer = cl.ComplexConv2d(c, c, 3, padding=1)
    conv = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731

    def four() -> torch.Tensor:
        return torch.stack((conv(xr, wr) - conv(xi, wi), conv(xr, wi) + conv(xi, wr)), 1)

    def gauss() -> torch.Tensor:
        t1, t2, t3 = conv(xr, wr), conv(xi, wi), conv(xr + xi, wr + wi)
        return torch.stack((t1 - t2, t3 - t1 - t2), 1)

    def doubled_batch() -> torch.Tensor:
        y = conv(leading.view(2 * n, c, side, side), torch.cat((wr, wi))).view(2, n, 2, c, side, side)
        return torch.stack((y[0, :, 0] - y[1, :, 1], y[0, :, 1] + y[1, :, 0]), 0)

    return {
        "real convolution (reference)": (lambda: conv(xr, wr), [xr, wr]),
        "native torch.complex64": (lambda: conv(z, wz), [z, wz]),
        "four real convolutions": (four, [xr, xi, wr, wi]),
        "Gauss: three real convolutions": (gauss, [xr, xi, wr, wi]),
        "doubled batch 2N×C, weights [W_r; W_i]": (doubled_batch, [leading, wr, wi]),
        "block weight on N×2C view (ComplexConv2d)": (lambda: layer(pair), [pair, layer.weight]),
    }


def layer_pairs(n: int) -> dict[str, tuple[nn.Module, nn.Module, tuple[int, ...]]]:
    """Section 2: name -> (real layer, complex layer, real input shape)."""
    c, side = 16, 32
    maps = (n, c, side, side)
    return {
        "conv 3×3 16→16": (nn.Conv2d(c, c, 3, padding=1, bias=False), cl.ComplexConv2d(c, c, 3, padding=1), maps),
        "conv 3×3 16→32 stride 2": (nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), cl.ComplexConv2d(c, 2 * c, 3, stride=2, padding=1), maps),
        "linear 1024→256": (nn.Linear(1024, 256, bias=False), cl.ComplexLinear(1024, 256), (n, 1024)),
        "δ (c = 1) vs ReLU": (nn.ReLU(), cl.ComplexNonlinearity(1.0), maps),
        "δ (c = E|f|) vs ReLU": (nn.ReLU(), cl.ComplexNonlinearity("mean"), maps),
        "norm (Eq. 7) vs BN, train": (nn.BatchNorm2d(c), cl.ComplexNorm(c), maps),
        "max-modulus pool vs max-pool 2×2": (nn.MaxPool2d(2), cl.ComplexMaxPool2d(2), maps),
        "avg-pool 2×2": (nn.AvgPool2d(2), cl.ComplexAvgPool2d(2), maps),
        "dropout p = 0.5": (nn.Dropout(0.5), cl.ComplexDropout(0.5), maps),
        "residual block 16→16": (BasicBlock(c, c), cl.ComplexBasicBlock(c, c), maps),
    }


def networks(quick: bool) -> dict[str, tuple[nn.Module, nn.Module]]:
    """Section 3: name -> (real original cut the same way, complex network)."""
    nets = {
        "LeNet": (cm.split_lenet(), cm.complex_lenet()),
        "ResNet-20-α": (cm.split_resnet(depth=20, variant="alpha"), cm.complex_resnet(depth=20, variant="alpha")),
    }
    if not quick:
        nets["ResNet-20-β"] = (cm.split_resnet(depth=20, variant="beta"), cm.complex_resnet(depth=20, variant="beta"))
    return nets


def section_representations(n: int, reps: int, result: dict[str, Any]) -> None:
    print(f"## 1. One complex 3×3 16→16 convolution on {n}×16×32×32, by representation\n")
    reps_variants = conv_representations(n)
    fwd = interleaved({k: forward(fn) for k, (fn, _) in reps_variants.items()}, reps)
    bwd = interleaved({k: forward_backward(fn, params) for k, (fn, params) in reps_variants.items()}, reps)
    ref = next(iter(reps_variants))
    rows = [
        [
            k,
            f"{fwd[k]['median'] * 1e3:.2f} ({fwd[k]['min'] * 1e3:.2f}–{fwd[k]['max'] * 1e3:.2f})",
            f"{fwd[k]['median'] / fwd[ref]['median']:.2f}×",
            f"{bwd[k]['median'] * 1e3:.2f} ({bwd[k]['min'] * 1e3:.2f}–{bwd[k]['max'] * 1e3:.2f})",
            f"{bwd[k]['median'] / bwd[ref]['median']:.2f}×",
        ]
        for k in reps_variants
    ]
    result["representations"] = {
        k: {
            "forward": fwd[k],
            "forward_backward": bwd[k],
            "forward_ratio": fwd[k]["median"] / fwd[ref]["median"],
            "forward_backward_ratio": bwd[k]["median"] / bwd[ref]["median"],
        }
        for k in reps_variants
    }
    print(markdown_table(["variant", "forward ms", "× real", "forward+backward ms", "× real"], rows))


def section_layers(n: int, reps: int, result: dict[str, Any]) -> None:
    print(f"\n## 2. Each complex layer against the real layer it replaces (batch {n})\n")
    rows = []
    for name, (real, comp, shape) in layer_pairs(n).items():
        x = torch.randn(*shape).requires_grad_()
        xc = torch.randn(shape[0], 2, *shape[1:]).requires_grad_()
        real.train(), comp.train()
        torch.manual_seed(0)
        f = interleaved({"real": forward(lambda: real(x)), "complex": forward(lambda: comp(xc))}, reps)
        b = interleaved(
            {"real": forward_backward(lambda: real(x), [x, *real.parameters()]), "complex": forward_backward(lambda: comp(xc), [xc, *comp.parameters()])}, reps
        )
        result["layers"][name] = {
            "forward": f,
            "forward_backward": b,
            "forward_ratio": f["complex"]["median"] / f["real"]["median"],
            "forward_backward_ratio": b["complex"]["median"] / b["real"]["median"],
        }
        rows.append(
            [
                name,
                f"{f['real']['median'] * 1e3:.2f}",
                f"{f['complex']['median'] * 1e3:.2f} ({f['complex']['min'] * 1e3:.2f}–{f['complex']['max'] * 1e3:.2f})",
                f"{f['complex']['median'] / f['real']['median']:.2f}×",
                f"{b['real']['median'] * 1e3:.2f}",
                f"{b['complex']['median'] * 1e3:.2f} ({b['complex']['min'] * 1e3:.2f}–{b['complex']['max'] * 1e3:.2f})",
                f"{b['complex']['median'] / b['real']['median']:.2f}×",
            ]
        )
    print(markdown_table(["layer", "real fwd ms", "complex fwd ms", "× real", "real fwd+bwd ms", "complex fwd+bwd ms", "× real"], rows))


def section_networks(n: int, reps: int, quick: bool, result: dict[str, Any]) -> None:
    print(f"\n## 3. Whole networks at batch {n}: complex (encode → Φ → decode, fresh θ and b) against the original cut the same way\n")
    rows = []
    images = torch.rand(n, 3, 32, 32)
    labels = torch.randint(0, 10, (n,))
    theta = torch.rand(n) * 6.283185307179586
    for name, (real, comp) in networks(quick).items():
        with torch.no_grad():
            b = comp.encoder(images.roll(1, 0))

        def loss(net: nn.Module, complex_: bool) -> torch.Tensor:
            return F.cross_entropy(net(images, theta, b) if complex_ else net(images), labels)

        real.eval(), comp.eval()
        f = interleaved({"real": forward(lambda: real(images)), "complex": forward(lambda: comp(images, theta, b))}, reps)
        real.train(), comp.train()
        bw = interleaved(
            {
                "real": forward_backward(lambda: loss(real, False), list(real.parameters())),
                "complex": forward_backward(lambda: loss(comp, True), list(comp.parameters())),
            },
            reps,
        )
        result["networks"][name] = {
            "forward": f,
            "forward_backward": bw,
            "forward_ratio": f["complex"]["median"] / f["real"]["median"],
            "forward_backward_ratio": bw["complex"]["median"] / bw["real"]["median"],
        }
        per = lambda t: t["median"] / n  # noqa: E731
        rows.append(
            [
                name,
                f"{per(f['real']) * 1e3:.3f}",
                f"{per(f['complex']) * 1e3:.3f}",
                f"{f['complex']['median'] / f['real']['median']:.2f}×",
                f"{per(bw['real']) * 1e3:.3f}",
                f"{per(bw['complex']) * 1e3:.3f}",
                f"{bw['complex']['median'] / bw['real']['median']:.2f}×",
            ]
        )
    print(
        markdown_table(
            [
                "network",
                "real ms/image (eval)",
                "complex ms/image (eval)",
                "× real",
                "real ms/image (train fwd+bwd)",
                "complex ms/image (train fwd+bwd)",
                "× real",
            ],
            rows,
        )
    )
    print("\npaper (Table 5, GPU, CIFAR-100 ResNet-56-α): 0.0004 s vs 0.0007 s per image, 1.75×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32, 5 repetitions, fewer networks (about a minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2, the machine's cores)")
    parser.add_argument("--batch", type=int, default=None, help="batch size N (default 64; quick 32)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 15; quick 5)")
    parser.add_argument("--sections", default="1,2,3", help="which sections to run, e.g. 1 or 1,2 (default all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.batch or (32 if args.quick else 64)
    reps = args.repeats or (5 if args.quick else 15)
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "batch": n,
        "repeats": reps,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "representations": {},
        "layers": {},
        "networks": {},
    }
    print(f"torch.set_num_threads({torch.get_num_threads()}); batch {n}; median (min–max) of {reps} interleaved repetitions after one warm-up; ms\n")

    try:
        sections = {int(v) for v in args.sections.split(",")}
    except ValueError:
        sections = set()
    if not sections or not sections <= {1, 2, 3}:
        parser.error(f"--sections takes numbers from 1, 2, 3 separated by commas, got {args.sections!r}")
    result["sections"] = sorted(sections)
    if 1 in sections:
        section_representations(n, reps, result)
    if 2 in sections:
        section_layers(n, reps, result)
    if 3 in sections:
        section_networks(n, reps, args.quick, result)
    print(f"-> {write_result('complex_layers' + ('_quick' if args.quick else ''), result)}")


if __name__ == "__main__":
    main()
