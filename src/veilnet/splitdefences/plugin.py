"""The standard split-inference defences' contributions to veilnet (:class:`veilnet.plugins.Method`):
three rows of the privacy benchmark (``veilnet bench privacy``) — ``dropout``, ``nopeek`` and
``shredder`` — each over the same real split network as the other rows. Imports nothing heavy."""

from veilnet.plugins import Method

METHOD = Method(
    "splitdefences",
    defences={
        "dropout": "veilnet.splitdefences.privacy",
        "nopeek": "veilnet.splitdefences.privacy",
        "shredder": "veilnet.splitdefences.privacy",
    },
)
