"""Response views read from ORM rows: the columns a view shows under their own names."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["row_values"]


def row_values(view: type[BaseModel], row: object) -> dict[str, object]:
    """`row`'s attributes named like `view`'s fields, to validate the view from.

    A caller adds the fields the row has no attribute for (computed, conditional or
    request-scoped ones) and those it shows in another form, then validates:
    `View.model_validate({**row_values(View, row), "field": value})`.
    """
    return {name: getattr(row, name) for name in view.model_fields if hasattr(row, name)}
