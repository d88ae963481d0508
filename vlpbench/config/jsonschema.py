"""One JSON Schema for experiment files, including every installed component's parameters.

Each component slot becomes a ``oneOf`` over the registered components of its kind, keyed by a
constant ``name``, so editors can complete and check the parameters of plugins too.
"""

from __future__ import annotations

from typing import Any

from vlpbench.config.schema import ExperimentFile
from vlpbench.core.errors import RegistryError
from vlpbench.core.kinds import slots
from vlpbench.core.registry import Registry


def _slots() -> dict[tuple[str, str], str]:
    """($def of the model, property) → kind, for every kind a run config names (the kind table's slots,
    each located in the pydantic model that holds it: ``objective.global`` → ``("ObjectiveConfig",
    "global")``)."""
    found: dict[tuple[str, str], str] = {}
    for kind, slot in slots():
        model: Any = ExperimentFile
        for key in slot.path[:-1]:
            model = next(f.annotation for n, f in model.model_fields.items() if (f.alias or n) == key)
        found[(model.__name__, slot.path[-1])] = kind
    return found


SLOTS = _slots()
SCHEDULED = {kind for kind, slot in slots() if slot.scheduled}


def _component_schema(kind: str, name: str, params_model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    defs: dict[str, Any] = {}
    if params_model is not None:
        params = params_model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs = params.pop("$defs", {})
        schema["properties"].update(params.get("properties", {}))
        if params.get("required"):
            schema["required"] = list(params["required"])
    schema["properties"]["name"] = {"const": name}
    schema["required"] = ["name", *schema.get("required", [])]
    if kind in SCHEDULED:
        schema["properties"]["weight"] = {"type": "number", "minimum": 0, "default": 1.0}
        schema["properties"]["start"] = {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.0}
    schema["title"] = f"{kind} '{name}'"
    return {"schema": schema, "defs": defs}


def experiment_schema(registry: Registry) -> dict[str, Any]:
    root = ExperimentFile.model_json_schema(by_alias=True)
    defs = root.setdefault("$defs", {})
    models = {"ExperimentFile": root, **defs}
    unavailable: list[str] = []
    for kind in {k for k in SLOTS.values()}:
        options = []
        for name in registry.names(kind):
            try:  # one component that cannot be imported must not hide the others
                params_model = registry.get(kind, name).params_model()
            except RegistryError as exc:
                unavailable.append(str(exc))
                continue
            built = _component_schema(kind, name, params_model)
            defs.update(built["defs"])
            options.append(built["schema"])
        defs[f"{kind}_spec"] = {"oneOf": options} if options else {"type": "object"}
    for (model, prop), kind in SLOTS.items():
        properties = models[model]["properties"]
        ref = {"$ref": f"#/$defs/{kind}_spec"}
        is_list = properties[prop].get("type") == "array"
        default = properties[prop].get("default")
        properties[prop] = {"type": "array", "items": ref} if is_list else dict(ref)
        if default is not None:
            properties[prop]["default"] = default
    root["title"] = "vlpbench experiment"
    if unavailable:
        root["x-vlpbench-unavailable"] = sorted(unavailable)
    return root
