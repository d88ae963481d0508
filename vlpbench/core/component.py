"""The typed base of a component: a component is its ``Params`` and its computation, nothing else.

Every component is built the same way (:func:`vlpbench.core.build.build_component`): its parameter
model validates the spec's parameters, then ``Component(params, context)``. Before this base each
component repeated the constructor that stores them; now it states only what differs::

    class MyMiner(ModuleComponent["MyMiner.Params"]):      # a torch module
        class Params(BaseModel):
            threshold: float = 0.5

        def forward(self, inputs): ...                      # self.params.threshold, self.context

A component whose constructor does more calls ``super().__init__(params, context)`` first and keeps
the rest. The parameter model is found as the class attribute ``Params`` (as before, so components
that do not use this base keep working unchanged); a class that names a real model as its type
argument instead (``Component[MyParams]``) and defines no ``Params`` gets it as ``Params``.

:class:`Component` imports neither torch nor pydantic (listing components stays cheap);
:class:`vlpbench.core.module_component.ModuleComponent` is the ``torch.nn.Module`` variant.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from vlpbench.core.context import BuildContext

P = TypeVar("P", bound="BaseModel")


class Component(Generic[P]):
    """A component with parameters ``P``: ``__init__`` stores ``self.params`` and ``self.context``.

    ``params`` is the validated parameter model; ``context`` the :class:`BuildContext` (sizes,
    corpus, schedule) it was built with, or None when a test builds it by hand.
    """

    Params: ClassVar[type[Any]]
    params: P
    context: BuildContext | None

    def __init__(self, params: P, context: BuildContext | None = None) -> None:
        self.params = params
        self.context = context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Take ``Params`` from the type argument when the class names a model class and defines none."""
        super().__init_subclass__(**kwargs)
        if "Params" in vars(cls):
            return
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Component):
                args = typing.get_args(base)
                if args and isinstance(args[0], type):
                    cls.Params = args[0]
                    return
