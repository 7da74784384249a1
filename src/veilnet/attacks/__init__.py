"""Attacks on any method's outputs: what a server learns from the features or outputs it sees,
whichever privacy method produced them — feature inversion (reconstruct the input from what the
server computes) and property inference. They come with the complex-valued networks.

Attacks that break one method live beside it: the key-recovery attacks on keyed models in
:mod:`veilnet.keyed.attacks`, the evasion attacks that test post-averaging in
:mod:`veilnet.robust.attacks`.
"""
