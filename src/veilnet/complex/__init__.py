"""Complex-valued privacy networks — Xiang et al., "Interpretable Complex-Valued Neural Networks
for Privacy Protection" (ICLR 2020).

Threat model (section 3): the server that runs the processing module, and anyone who intercepts
what it receives, is honest-but-curious: it sees the encoded feature ``x = e^{iθ}(a + b·i)``
(Eq. 2) and tries to recover the input or infer its properties. The angle θ and the fooling
counterpart ``b`` stay on the device; only the device can decode ``Re[Φ(x)·e^{−iθ}]`` (Eq. 3).

* :mod:`veilnet.complex.layers` — the rotation-equivariant layers of Φ (Eq. 4–7, Appendix A) and
  the pair-tensor representation (``N×2×…``: real and imaginary part at dimension 1).
* :mod:`veilnet.complex.models` — LeNet, ResNet-20…110 (α, β), VGG-16 and AlexNet split into
  encoder / processing module / decoder (section 5.1), as :class:`ComplexNet`, and the real
  baselines from the same splits as :class:`SplitNet`.
"""

from __future__ import annotations

from veilnet.complex.layers import (
    ComplexAdaptiveAvgPool2d,
    ComplexAvgPool2d,
    ComplexBasicBlock,
    ComplexConv2d,
    ComplexDropout,
    ComplexFlatten,
    ComplexLinear,
    ComplexMaxPool2d,
    ComplexNonlinearity,
    ComplexNorm,
    ComplexResidual,
    as_pair,
    decode,
    encode,
    equivariance_error,
    from_complex,
    rotate,
    to_complex,
)
from veilnet.complex.models import (
    ComplexNet,
    Encoder,
    FeatureNoise,
    SplitNet,
    complex_alexnet,
    complex_lenet,
    complex_resnet,
    complex_vgg16,
    load_real_weights,
    split_alexnet,
    split_lenet,
    split_resnet,
    split_vgg16,
)

__all__ = [
    "ComplexAdaptiveAvgPool2d",
    "ComplexAvgPool2d",
    "ComplexBasicBlock",
    "ComplexConv2d",
    "ComplexDropout",
    "ComplexFlatten",
    "ComplexLinear",
    "ComplexMaxPool2d",
    "ComplexNet",
    "ComplexNonlinearity",
    "ComplexNorm",
    "ComplexResidual",
    "Encoder",
    "FeatureNoise",
    "SplitNet",
    "as_pair",
    "complex_alexnet",
    "complex_lenet",
    "complex_resnet",
    "complex_vgg16",
    "decode",
    "encode",
    "equivariance_error",
    "from_complex",
    "load_real_weights",
    "rotate",
    "split_alexnet",
    "split_lenet",
    "split_resnet",
    "split_vgg16",
    "to_complex",
]
