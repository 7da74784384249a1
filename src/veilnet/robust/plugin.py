"""Post-averaging's contributions to veilnet (:class:`veilnet.plugins.Method`): the ``robust``
command (the defence, its certified baseline and the evasion attacks that evaluate them). Imports
nothing heavy."""

from veilnet.plugins import Method

METHOD = Method("postavg", commands={"robust": ("veilnet.robust.cli", "post-averaging defence and evasion attacks")})
