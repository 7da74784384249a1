"""Training: one core that runs any step function, and the classifier's step on it.

* :func:`fit` (:mod:`.core`) runs ``step(batch, info)`` over epochs with a progress bar,
  per-epoch metrics in ``metrics.json``, a checkpoint per epoch and exact resume for any named
  set of models, optimisers, schedulers and generators (a GAN's generator and discriminator
  with their two optimisers as much as one classifier).
* :func:`train` / :func:`train_epochs` (:mod:`.classifier`) train a zoo classifier with
  cross-entropy, into an output folder (resumable, the model saved with its card) or in memory.
* :func:`evaluate` / :func:`plot_confusion` (:mod:`.evaluation`) measure a saved model.

The ``veilnet train`` and ``veilnet eval`` commands are in :mod:`.cli`.
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(__name__, __file__, ("classifier", "core", "evaluation"))
