"""Rows between a consumer and a provider organisation (contracts, negotiations, agreements)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from exchange.accounts import Caller
from exchange.errors import NotFound

if TYPE_CHECKING:  # the models are only named here: `exchange.market` imports this module
    from exchange.market.models import Agreement, Negotiation
    from exchange.models import Contract

__all__ = ["party_row", "party_rows"]

R = TypeVar("R", "Contract", "Negotiation", "Agreement")


def party_row(
    session: Session, model: type[R], row_id: str, caller: Caller, *, noun: str, sees_all: bool
) -> R:
    """The row, for its two parties (and anyone who `sees_all`); `NotFound` for anyone else."""
    row = session.get(model, row_id)
    if row is None or not (sees_all or caller.org_id in (row.consumer_org, row.provider_org)):
        raise NotFound(f"no such {noun}", **{f"{noun}_id": row_id})
    return row


def party_rows(model: type[R], caller: Caller, *, sees_all: bool) -> Select[tuple[R]]:
    """Every row of `model` the caller's organisation is a party to (all when it `sees_all`)."""
    stmt = select(model)
    if sees_all:
        return stmt
    return stmt.where(or_(model.consumer_org == caller.org_id, model.provider_org == caller.org_id))
