"""HTML form fields built from an operator's JSON Schema, and the form read back into params.

Only the shapes the operators' schemas use (pydantic's output): strings, integers,
numbers, booleans, enums, lists of strings, `[lo, hi]` pairs, each optionally
`anyOf [..., null]`. Anything else is left to its default. The API validates the
result again: this is a convenience, not a check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "p."  # form names of parameters, apart from the request's own fields


@dataclass(frozen=True)
class SchemaField:
    """One input (or a lo/hi pair) of the generated form."""

    name: str
    kind: str  # string | integer | number | boolean | enum | list | pair
    title: str
    description: str
    required: bool
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def input_name(self) -> str:
        return PREFIX + self.name


def _kind(spec: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    if "enum" in spec:
        return "enum", spec
    t = spec.get("type")
    if t == "array":
        if "prefixItems" in spec and spec.get("minItems") == 2 == spec.get("maxItems"):
            return "pair", spec
        if spec.get("items", {}).get("type") == "string":
            return "list", spec
        return None
    if t in ("string", "integer", "number", "boolean"):
        return str(t), spec
    return None


def fields(schema: Mapping[str, Any]) -> list[SchemaField]:
    """The form's fields, in the schema's order."""
    required = set(schema.get("required", []))
    out: list[SchemaField] = []
    for name, spec in schema.get("properties", {}).items():
        options = spec.get("anyOf")
        inner = spec
        if options:
            concrete = [o for o in options if o.get("type") != "null"]
            if len(concrete) != 1:
                continue
            inner = concrete[0]
        found = _kind(inner)
        if found is None:
            continue
        kind, inner = found
        out.append(
            SchemaField(
                name=name,
                kind=kind,
                title=str(spec.get("title", name)),
                description=str(spec.get("description", "")),
                required=name in required,
                default=spec.get("default"),
                choices=tuple(str(c) for c in inner.get("enum", ())),
                minimum=inner.get("minimum"),
                maximum=inner.get("maximum"),
            )
        )
    return out


class FormError(ValueError):
    """A value the person typed does not fit its field."""


def _number(text: str, kind: str, name: str) -> float | int:
    try:
        return int(text) if kind == "integer" else float(text)
    except ValueError:
        raise FormError(f"{name}: not a number") from None


def params_from_form(schema: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    """The `params` object from the submitted form; empty optional fields are left out."""
    params: dict[str, Any] = {}
    for f in fields(schema):
        if f.kind == "pair":
            lo = form.get(f.input_name + ".lo", "").strip()
            hi = form.get(f.input_name + ".hi", "").strip()
            if lo or hi:
                if not (lo and hi):
                    raise FormError(f"{f.name}: give both bounds")
                params[f.name] = [_number(lo, "number", f.name), _number(hi, "number", f.name)]
            continue
        raw = form.get(f.input_name, "").strip()
        if f.kind == "boolean":
            params[f.name] = raw in ("on", "true", "1")
            continue
        if not raw:
            continue
        if f.kind == "list":
            params[f.name] = [v.strip() for v in raw.split(",") if v.strip()]
        elif f.kind in ("integer", "number"):
            params[f.name] = _number(raw, f.kind, f.name)
        else:
            params[f.name] = raw
    return params
