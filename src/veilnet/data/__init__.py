"""Data sets, named everywhere by one spec string, decoded once and cached.

Specs: ``digits`` (scikit-learn's embedded handwritten digits, resized to 32×32×3, fixed
stratified 80/20 split; options ``digits:size=N,channels=1|3``), ``folder:PATH`` (image folders
``SPLIT/CLASS/IMAGE`` in a directory or a ``.zip``, e.g. the JPEG CIFAR-10), ``cifar10:PATH`` and
``cifar100:PATH`` (the official Python pickle layout, from a folder or the ``.tar.gz``;
``download=True`` / ``--download`` fetches it with an MD5 check). A relative PATH is taken under
``$VEILNET_DATA`` when it is set (and a bare ``cifar10`` means ``$VEILNET_DATA`` itself). :func:`load` returns an :class:`ImageSplit` (uint8 images
``N×C×H×W``, int64 labels, class names); :func:`subset`, :func:`partition_iid` and
:func:`partition_dirichlet` cut it. Decoded images are cached as ``.npy`` arrays under
``$XDG_CACHE_HOME/veilnet/data`` (default ``~/.cache/veilnet``), keyed by the source's absolute
path, size and modification time and the split, written atomically and replaced when the source
changes; a cached load of all of CIFAR-10 takes a fraction of a second.
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("cache", "cifar", "specs", "split"))
