"""The complex-valued networks' contributions to veilnet (:class:`veilnet.plugins.Method`): the
``complex`` and ``split`` commands, the ``complex-*`` and ``split-*`` models (``complex-processor``
and ``complex-device`` are the parts :mod:`.protocol` registers), the ``complex`` serving kind and
the privacy benchmark's defences ``none``, ``layers``, ``noise`` and ``complex`` (:mod:`.privacy`).
Imports nothing heavy."""

from veilnet.plugins import Method

METHOD = Method(
    "complex",
    commands={
        "complex": ("veilnet.complex.cli", "complex-valued privacy networks: train, evaluate, attack"),
        "split": (
            "veilnet.complex.cli",
            "split a complex-valued network into the server's part (processor only) and the device's part (encoder, decoder, counterpart pool)",
        ),
    },
    models={
        "complex-": "veilnet.complex.models",
        "split-": "veilnet.complex.models",
        "complex-processor": "veilnet.complex.protocol",
        "complex-device": "veilnet.complex.protocol",
    },
    kinds={"complex": "veilnet.complex.serving"},
    defences={name: "veilnet.complex.privacy" for name in ("none", "layers", "noise", "complex")},
)
