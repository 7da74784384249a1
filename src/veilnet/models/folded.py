"""An inference-only copy of a model with cheaper convolutions: batch normalisation folded into
the convolution (or linear layer) before it, run in channels-last memory format.

In eval mode a batch normalisation after a convolution is an affine map per channel, so it can be
folded into the convolution's weights and bias: ``w' = w·γ/σ``, ``b' = β + (b − μ)·γ/σ`` with
``σ = sqrt(running_var + eps)`` (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Internal Covariate Shift", section 3.2, the inference transform). The copy computes
the same function up to float rounding, with one pass over each activation fewer per folded
layer; channels-last (NHWC) is the layout oneDNN's CPU convolutions run fastest in here.

The folding traces the model with ``torch.fx``, so it finds every convolution → batch-norm pair
(a convolution whose only consumer is the batch norm) whatever the model names them; a model fx
cannot trace is not folded (:func:`fold` returns None and the caller keeps the model as it is). The copy
shares nothing with the model: it goes stale when the model's weights change, which
:class:`FoldedCache` detects.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["FoldedCache", "fold"]

log = logging.getLogger(__name__)


class _ChannelsLast(nn.Module):
    """``model`` fed its input in channels-last memory format (4-D inputs; others as they are)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x)


def fold(model: nn.Module) -> nn.Module | None:
    """An eval-mode copy of ``model`` with its batch normalisations folded into the layers before
    them, in channels-last memory format; None when fx cannot trace ``model`` (one log line says
    why). ``model`` itself is not changed."""
    if model.training:
        raise ValueError("fold() needs a model in eval mode: training mode normalises with each batch's statistics")
    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception as exc:  # fx raises many types for code it cannot trace
        log.info("%s: batch norm not folded (fx cannot trace it: %s)", type(model).__name__, type(exc).__name__)
        return None
    modules = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
            continue
        before = node.args[0]
        conv = modules.get(before.target) if isinstance(before, torch.fx.Node) and before.op == "call_module" else None
        if not isinstance(conv, nn.modules.conv._ConvNd) or len(before.users) != 1:
            continue  # only a convolution whose one consumer is this batch norm
        parent, _, name = before.target.rpartition(".")
        setattr(graph.get_submodule(parent), name, fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.modules.conv._ConvTransposeNd)))
        node.replace_all_uses_with(before)
        graph.graph.erase_node(node)
    graph.graph.lint()
    graph.recompile()
    graph.delete_all_unused_submodules()
    return _ChannelsLast(graph).eval()


class FoldedCache:
    """The folded copy of one model (:func:`fold`), rebuilt when the model's parameters or buffers
    change (in place, as an optimiser step or ``load_state_dict`` does, or by moving the model to
    another device), so a caller never runs stale weights. ``get()`` is None for a model in
    training mode (its batch norms use the batch's statistics) or one fx cannot trace."""

    def __init__(self, model: nn.Module, wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        self.model = model
        self.wrap = wrap  # applied to the folded copy once it is built (e.g. veilnet.models.prepare)
        self._stamp: tuple | None = None
        self._folded: nn.Module | None = None

    def _current(self) -> tuple:
        return tuple((t.data_ptr(), t._version) for t in (*self.model.parameters(), *self.model.buffers()))

    def get(self) -> nn.Module | None:
        if self.model.training:
            return None
        stamp = self._current()
        if stamp != self._stamp:
            folded = fold(self.model)
            self._folded = folded if folded is None or self.wrap is None else self.wrap(folded)
            self._stamp = stamp
        return self._folded
