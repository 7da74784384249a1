"""The keyed-images method's contributions to veilnet (:class:`veilnet.plugins.Method`): the
``key`` and ``keyed`` commands, the ``keyed`` serving kind and the privacy benchmark's
``keyed-block`` and ``keyed-vit`` rows. Imports nothing heavy."""

from veilnet.plugins import Method

METHOD = Method(
    "keyed",
    commands={
        "key": ("veilnet.keyed.keys_cli", "secret keys"),
        "keyed": ("veilnet.keyed.cli", "keyed models: encrypt images, transform models (ConvMixer, ViT), evaluate, attack"),
    },
    kinds={"keyed": "veilnet.keyed.serving"},
    defences={"keyed-block": "veilnet.keyed.privacy", "keyed-vit": "veilnet.keyed.privacy"},
    evaluate="evaluate the plain model it came from with the key: veilnet keyed evaluate PLAIN_MODEL --key KEY",
)
