"""Standard split-inference defences, packaged as a method for the privacy benchmark.

Each defence runs on the real split network of the zoo (``split-lenet``, ``split-resnet20-alpha``:
encoder ``g`` on the device, processor on the server, decoder on the device) and changes only what
the device sends or how the encoder is trained:

* ``dropout`` — dropout on the released feature in training and inference (He et al., "Model
  inversion attacks against collaborative inference", ACSAC 2019, the dropout defence);
* ``nopeek`` — the encoder trained to decorrelate its feature from the image (Vepakomma et al.,
  "NoPeek: Information leakage reduction to share activations in distributed deep learning", 2020);
* ``shredder`` — learned additive Laplace noise on the feature (Mireshghallah et al., "Shredder:
  Learning Noise Distributions to Protect Inference Privacy", ASPLOS 2020).

Threat model: the server is honest-but-curious and white-box (He et al.'s setting): it knows the
architecture and the weights of the encoder, the defence and its knob, but not the device's random
draws (the dropout mask, the noise) for the victim's images.

* :mod:`veilnet.splitdefences.layers` — the feature layers (dropout with a caller's generator,
  learned Laplace noise) and the sample distance correlation;
* :mod:`veilnet.splitdefences.privacy` — the benchmark's rows and ``DEFENCES``.

The names below are imported on first use (importing the package imports no torch).
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("layers", "privacy"))
