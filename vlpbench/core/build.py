"""Building components from their specs through the registry (the only place that does)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vlpbench.config.schema import ComponentSpec
from vlpbench.core.capabilities import declared
from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.core.registry import Registry


def build_component(registry: Registry, kind: str, spec: ComponentSpec | dict[str, Any], context: BuildContext) -> Any:
    """``spec`` → ``Component(Params(**params), context)``."""
    spec = spec if isinstance(spec, ComponentSpec) else ComponentSpec.model_validate(spec)
    cls = registry.get(kind, spec.name).load()
    params_model = declared(cls, "Params")
    try:
        parsed = params_model.model_validate(spec.params()) if params_model is not None else None
    except ValidationError as exc:
        raise ConfigError(f"{kind} '{spec.name}': invalid parameters: {exc}") from None
    return cls(parsed, context)
