"""The ``torch.nn.Module`` variant of :class:`vlpbench.core.component.Component`.

Objective components and encoders are torch modules (their parameters train, their buffers resume
from checkpoints); this base runs ``nn.Module.__init__`` and then stores ``params`` and ``context``.
It lives apart from :mod:`vlpbench.core.component` because it imports torch, which listing
components and a plugin's ``plugin.py`` must not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from vlpbench.core.component import Component, P

if TYPE_CHECKING:  # pragma: no cover
    from vlpbench.core.context import BuildContext


class ModuleComponent(nn.Module, Component[P]):
    """A component that is a ``torch.nn.Module``: ``self.params``, ``self.context``, then your layers.

    ``context`` is a plain attribute, not a submodule: it adds nothing to ``state_dict`` or
    ``parameters()``.
    """

    def __init__(self, params: P, context: BuildContext | None = None) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, params, context)
