"""Turning pydantic validation errors into one-paragraph messages with file, line and key."""

from __future__ import annotations

import types
import typing
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from vlpbench.core.errors import did_you_mean

Loc = tuple[str | int, ...]


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/list/dict wrappers down to a pydantic model class (or None)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
        return None
    if origin in (list, tuple, set, dict):
        args = typing.get_args(annotation)
        return _unwrap(args[-1]) if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (None if not a model)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            # dict keys (e.g. variant names) and list indices do not change the model
            continue
        model = _unwrap(field.annotation)
    return model


def valid_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def describe(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_errors(
    exc: ValidationError,
    root: type[BaseModel],
    where: Callable[[Loc], str],
    prefix: Loc = (),
) -> str:
    """One paragraph naming, for each error, the place (file and line), the key and the fix."""
    parts = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full = prefix + loc
        if err["type"] == "extra_forbidden":
            keys = valid_keys(model_at(root, loc[:-1]))
            hint = did_you_mean(str(loc[-1]), keys)
            parts.append(
                f"{where(full)}: unknown key '{describe(full)}'{hint} Valid keys there: {', '.join(keys) or '(none)'}."
            )
        elif err["type"] == "missing":
            parts.append(f"{where(full)}: required key '{describe(full)}' is missing; add it.")
        else:
            given = err.get("input")
            shown = repr(given) if not isinstance(given, dict) else "a mapping"
            if len(shown) > 60:
                shown = shown[:57] + "..."
            parts.append(f"{where(full)}: '{describe(full)}' = {shown} is invalid: {err['msg']}.")
    return " ".join(parts)
