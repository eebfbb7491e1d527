"""The market's refusals, each with a stable problem code (mapped in gateway/errors.py)."""

from __future__ import annotations

from exchange.errors import Forbidden

__all__ = ["AgreementExhausted", "OutsideAgreement", "PartyNotVerified"]


class PartyNotVerified(Forbidden):
    """A party to a negotiation has not had its identity verified (DSL art. 33)."""

    code = "party-not-verified"


class OutsideAgreement(Forbidden):
    """The computation asks for an operator, purpose or delivery the agreement does not grant."""

    code = "outside-agreement"


class AgreementExhausted(Forbidden):
    """The agreement's count, rows or ε share would be exceeded."""

    code = "agreement-exhausted"
