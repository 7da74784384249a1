"""The keyed-images method's contributions to veilnet (:class:`veilnet.plugins.Method`): the
``key`` and ``keyed`` commands and the ``keyed`` serving kind. Imports nothing heavy."""

from veilnet.plugins import Method

METHOD = Method(
    "keyed",
    commands={
        "key": ("veilnet.keyed.keys_cli", "secret keys"),
        "keyed": ("veilnet.keyed.cli", "keyed models: encrypt images, transform models (ConvMixer, ViT), evaluate, attack"),
    },
    kinds={"keyed": "veilnet.keyed.serving"},
    evaluate="evaluate the plain model it came from with the key: veilnet keyed evaluate PLAIN_MODEL --key KEY",
)
