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
* :mod:`veilnet.complex.training` — the joint objective of Eq. 9 (task loss + λ·WGAN loss of
  Eq. 8 against a discriminator) on :func:`veilnet.training.fit`; :func:`evaluate_complex`.
* :mod:`veilnet.complex.protocol` — the split deployment: :class:`Device` (encoder, decoder, θ
  and the counterpart pool), :class:`Server` (the processor only), :func:`split_model`.

The names below are imported on first use (``veilnet complex --help`` imports no torch).
"""

from __future__ import annotations

from veilnet._lazy import exports

#: Public name -> the submodule defining it, imported on first use (PEP 562).
_WHERE = {
    **dict.fromkeys(
        [
            "CHANNEL_MEAN",
            "ComplexAdaptiveAvgPool2d",
            "ComplexAvgPool2d",
            "ComplexBasicBlock",
            "ComplexConv2d",
            "ComplexDropout",
            "ComplexFlatten",
            "ComplexLinear",
            "ComplexMaxPool2d",
            "ComplexNonlinearity",
            "ComplexNorm",
            "ComplexResidual",
            "ComplexShortcutA",
            "PAIR_DIM",
            "as_pair",
            "check_pair",
            "decode",
            "encode",
            "equivariance_error",
            "from_complex",
            "modulus",
            "real_part",
            "rotate",
            "to_complex",
        ],
        "layers",
    ),
    **dict.fromkeys(
        [
            "ComplexNet",
            "Encoder",
            "FeatureNoise",
            "MODELS",
            "SplitNet",
            "VARIANTS",
            "batched",
            "complex_alexnet",
            "complex_lenet",
            "complex_resnet",
            "complex_vgg16",
            "load_real_weights",
            "split_alexnet",
            "split_lenet",
            "split_resnet",
            "split_vgg16",
        ],
        "models",
    ),
    **dict.fromkeys(
        [
            "BatchSecret",
            "DEVICE",
            "Device",
            "DevicePart",
            "PARTS",
            "PROCESSOR",
            "ProcessorPart",
            "Server",
            "SplitFiles",
            "accuracy",
            "complex_device",
            "complex_processor",
            "load_complex_net",
            "load_device_part",
            "load_processor_part",
            "logits",
            "pool_from_data",
            "processor_fingerprint",
            "split_model",
        ],
        "protocol",
    ),
    **dict.fromkeys(
        [
            "ComplexEvaluation",
            "ComplexStep",
            "ComplexTrainConfig",
            "ComplexTrainResult",
            "DISCRIMINATOR_FILE",
            "Discriminator",
            "decoy_angles",
            "decoys",
            "derangement",
            "evaluate_complex",
            "gradient_penalty",
            "load_discriminator",
            "train_complex",
            "wasserstein",
        ],
        "training",
    ),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
