"""``vlpbench plugins --kind K --json`` and ``vlpbench describe COMPONENT``: the registry, readable.

``describe`` shows one component the way a researcher wants to see it before writing it into an
experiment file: its kind and where it goes in the config, the plugin it comes from (with the
plugin's version) and the Python object behind it, its documentation, and every parameter with its
type, default, constraints and description — taken from the component's own pydantic ``Params``
model, the same model that validates experiment files, so the view cannot drift from what is
accepted. Presets show the overrides they apply.
"""

from __future__ import annotations

import inspect
from typing import Any

from vlpbench.core.errors import ConfigError, UserError, did_you_mean
from vlpbench.core.registry import KINDS, Entry, Registry

#: Where a component of each kind is named in an experiment file.
CONFIG_SLOTS = {
    "dataset": "data (or a task's dataset)",
    "image_encoder": "model.image_encoder",
    "text_encoder": "model.text_encoder",
    "global_loss": "objective.global",
    "positive_miner": "objective.positive_miner",
    "negative_weighting": "objective.negative_weighting[]",
    "local_head": "objective.local_heads[]",
    "auxiliary": "objective.auxiliaries[]",
    "task": "tasks[]",
    "launcher": "launcher",
    "preset": "a variant's preset:",
}
_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                "minItems", "maxItems", "pattern", "enum")


def check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind '{kind}' is not a component kind{did_you_mean(kind, list(KINDS)) or '.'} "
                          f"Kinds: {', '.join(KINDS)}.")


def listing(loaded: Any, kind: str | None = None, metadata: bool = False) -> dict[str, Any]:
    """Plugins and components (of ``kind`` when given) as plain data, for ``plugins --json``.

    Each component is read from its metadata model (:mod:`vlpbench.core.metadata`): without
    ``metadata``, the registration's part (no component is imported, so torch is not); with it, the
    whole model of its kind (each component imported; what fails is ``metadata_error``).
    """
    check_kind(kind)
    return {
        "plugins": [{"name": p.name, "version": p.version, "distribution": p.distribution, "status": p.status,
                     "reason": p.reason or None} for p in loaded.plugins],
        "components": [component_listing(e, metadata) for e in loaded.registry.all_entries()
                       if kind is None or e.kind == kind],
        "problems": list(loaded.registry.problems),
    }


def component_listing(entry: Entry, full: bool = False) -> dict[str, Any]:
    """One component of ``plugins --json``: the keys it always had, ``distribution`` and ``metadata``."""
    try:
        data = entry.metadata(loaded=full).as_dict()
        error = None
    except UserError as exc:
        data, error = entry.metadata(loaded=False).as_dict(), str(exc)
    out = {"kind": data["kind"], "name": data["name"], "origin": data["origin"],
           "origin_version": data["origin_version"], "target": data["target"], "summary": data["description"],
           "distribution": data["distribution"], "metadata": data}
    if error is not None:
        out["metadata_error"] = error
    return out


def find_entries(registry: Registry, name: str, kind: str | None = None) -> list[Entry]:
    """Every entry called ``name`` (of ``kind`` when given); a clear error with close names when none."""
    check_kind(kind)
    kinds = [kind] if kind else list(KINDS)
    found = [registry.entries[k][name] for k in kinds if name in registry.entries[k]]
    if not found:
        names = sorted({e.name for e in registry.all_entries() if kind is None or e.kind == kind})
        where = f" of kind '{kind}'" if kind else ""
        raise ConfigError(f"no component{where} named '{name}'{did_you_mean(name, names) or '.'} `vlpbench plugins"
                          f"{' --kind ' + kind if kind else ''}` lists them.")
    return found


def _type_text(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(repr(v) for v in prop["enum"])
    if "const" in prop:
        return repr(prop["const"])
    if "anyOf" in prop or "oneOf" in prop:
        return " | ".join(_type_text(p) for p in prop.get("anyOf", prop.get("oneOf", [])))
    kind = prop.get("type", "any")
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"list[{_type_text(prop['items'])}]"
    return {"number": "float", "integer": "int", "string": "str", "boolean": "bool", "object": "mapping",
            "null": "None"}.get(str(kind), str(kind))


def parameters(params_model: Any) -> list[dict[str, Any]]:
    """One entry per parameter: name, type, required, default, constraints, description."""
    if params_model is None:
        return []
    schema = params_model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        constraints = {key: prop[key] for key in _CONSTRAINTS if key in prop and key != "enum"}
        out.append({"name": name, "type": _type_text(prop), "required": name in required,
                    "default": prop.get("default"), "constraints": constraints,
                    "description": prop.get("description", "")})
    return out


#: Declared metadata ``describe`` has always shown at the top level of its JSON (kept for its readers).
_TOP_LEVEL = ("protocol_version", "metric_version", "requires")


def describe_entry(entry: Entry, versions: dict[str, str | None]) -> dict[str, Any]:
    """Everything ``vlpbench describe`` shows about one component, as plain data (read from its metadata
    model; ``versions``: plugin → version, for entries registered without one)."""
    target = entry.load()
    meta = entry.metadata(target)
    own = target.__dict__.get("__doc__") if inspect.isclass(target) else getattr(target, "__doc__", None)
    doc = inspect.cleandoc(own) if isinstance(own, str) and (inspect.isclass(target) or inspect.isfunction(target)) \
        else None  # the component's own docstring, not one inherited from torch.nn.Module
    info: dict[str, Any] = {
        "kind": meta.kind, "name": meta.name, "config_key": CONFIG_SLOTS.get(entry.kind, entry.kind),
        "origin": meta.origin, "origin_version": meta.origin_version or versions.get(entry.origin),
        "target": meta.target, "summary": meta.description, "doc": doc or "",
        "distribution": meta.distribution, "metadata": meta.as_dict(), "declares": meta.declarations(),
    }
    if entry.kind == "preset":
        info["overrides"] = dict(meta.overrides)
        info["parameters"] = []
        return info
    info["parameters"] = parameters(meta.params)
    info.update({key: value for key, value in info["declares"].items() if key in _TOP_LEVEL and value})
    return info


def format_description(info: dict[str, Any]) -> str:
    version = f" {info['origin_version']}" if info.get("origin_version") else ""
    lines = [f"{info['kind']} '{info['name']}'  — {info['summary']}" if info["summary"] else
             f"{info['kind']} '{info['name']}'",
             f"  from plugin:  {info['origin']}{version} ({info['target']})",
             f"  used as:      {info['config_key']}: {{name: {info['name']}, ...}}"
             if info["kind"] != "preset" else f"  used as:      variants: {{V: {{preset: {info['name']}}}}}"]
    for attribute, value in info.get("declares", {}).items():
        if attribute != "overrides":
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {attribute + ':':<13} {shown}")
    if info["doc"]:
        lines += ["", *("  " + line if line else "" for line in info["doc"].splitlines())]
    if info["kind"] == "preset":
        lines += ["", "overrides:"] + [f"  {key}: {value}" for key, value in info["overrides"].items()]
        return "\n".join(lines)
    lines.append("")
    if not info["parameters"]:
        lines.append("parameters: none")
        return "\n".join(lines)
    lines.append("parameters:")
    width = max(len(p["name"]) for p in info["parameters"])
    for p in info["parameters"]:
        default = "required" if p["required"] else f"default {p['default']!r}"
        limits = ", ".join(f"{k} {v}" for k, v in p["constraints"].items())
        lines.append(f"  {p['name']:<{width}}  {p['type']}; {default}" + (f"; {limits}" if limits else ""))
        if p["description"]:
            lines.append(f"  {'':<{width}}    {p['description']}")
    return "\n".join(lines)
