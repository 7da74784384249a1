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

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("layers", "models", "protocol", "training"))
