"""Key-management roles (docs/compliance.md CRY-13) and the one check every KMS operation calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from crypto.errors import KeyRoleDenied


class KeyRole(StrEnum):
    """The three cryptographic roles of GB/T 39786-2021 (密钥管理员, 密码操作员, 密码审计员)."""

    KEY_ADMINISTRATOR = "key-administrator"
    CRYPTO_OPERATOR = "crypto-operator"
    CRYPTO_AUDITOR = "crypto-auditor"


class KmsAction(StrEnum):
    """What a KMS caller asks to do; each maps to the roles allowed to do it."""

    GENERATE = "generate"
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    RESUME = "resume"
    ROTATE = "rotate"
    ARCHIVE = "archive"
    REVOKE = "revoke"
    REQUEST_DESTROY = "request-destroy"
    APPROVE_DESTROY = "approve-destroy"
    CANCEL_DESTROY = "cancel-destroy"
    BACKUP = "backup"
    RESTORE = "restore"
    DISTRIBUTE = "distribute"
    USE = "use"
    INVENTORY = "inventory"
    ROTATION_DUE = "rotation-due"


_ADMIN = KeyRole.KEY_ADMINISTRATOR
_OPERATOR = KeyRole.CRYPTO_OPERATOR
_AUDITOR = KeyRole.CRYPTO_AUDITOR

# Administrators manage keys, operators use them, auditors only read the inventory and
# the schedule (and the audit log, outside crypto).
ALLOWED_ROLES: Mapping[KmsAction, frozenset[KeyRole]] = MappingProxyType(
    {
        KmsAction.GENERATE: frozenset({_ADMIN}),
        KmsAction.ACTIVATE: frozenset({_ADMIN}),
        KmsAction.SUSPEND: frozenset({_ADMIN}),
        KmsAction.RESUME: frozenset({_ADMIN}),
        KmsAction.ROTATE: frozenset({_ADMIN}),
        KmsAction.ARCHIVE: frozenset({_ADMIN}),
        KmsAction.REVOKE: frozenset({_ADMIN}),
        KmsAction.REQUEST_DESTROY: frozenset({_ADMIN}),
        KmsAction.APPROVE_DESTROY: frozenset({_ADMIN}),
        KmsAction.CANCEL_DESTROY: frozenset({_ADMIN}),
        KmsAction.BACKUP: frozenset({_ADMIN}),
        KmsAction.RESTORE: frozenset({_ADMIN}),
        KmsAction.DISTRIBUTE: frozenset({_ADMIN, _OPERATOR}),
        KmsAction.USE: frozenset({_OPERATOR}),
        KmsAction.INVENTORY: frozenset({_ADMIN, _OPERATOR, _AUDITOR}),
        KmsAction.ROTATION_DUE: frozenset({_ADMIN, _AUDITOR}),
    }
)


def key_roles(roles: Iterable[str]) -> frozenset[KeyRole]:
    """The key roles among `roles`; other (platform) role names are ignored."""
    known = {role.value for role in KeyRole}
    return frozenset(KeyRole(role) for role in roles if role in known)


def require_key_role(roles: Iterable[str], action: KmsAction | str) -> frozenset[KeyRole]:
    """Raise `KeyRoleDenied` unless `roles` may perform `action`; return the key roles held.

    The single check every KMS administrative operation calls. Refuses, whatever the
    action, a holder of the crypto-auditor role together with either other role:
    the auditor must be independent of the duties audited (docs/compliance.md CRY-13).
    """
    held = key_roles(roles)
    if _AUDITOR in held and held & {_ADMIN, _OPERATOR}:
        raise KeyRoleDenied(
            "the crypto auditor may hold neither the key administrator nor the operator role",
            roles=sorted(held),
        )
    try:
        chosen = KmsAction(action)
    except ValueError:
        raise KeyRoleDenied("unknown key management action", action=str(action)) from None
    allowed = ALLOWED_ROLES[chosen]
    if not held & allowed:
        raise KeyRoleDenied(
            f"{chosen.value} needs one of: {', '.join(sorted(allowed))}",
            action=chosen.value,
            roles=sorted(held),
        )
    return held


@dataclass(frozen=True)
class KeyActor:
    """Who asks for a KMS operation: a stable subject id and the roles it holds.

    The integrator maps platform roles onto `KeyRole` values when building it; role
    names that are not key roles are dropped.
    """

    id: str
    roles: frozenset[KeyRole] = field(default_factory=frozenset)
    # The registered person behind `id`, and the person who created (invited) them:
    # the two-person rule compares people, not clients (issue 11).
    person: str | None = None
    sponsor: str | None = None

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 128:
            raise ValueError("actor id must be 1 to 128 characters")
        object.__setattr__(self, "roles", key_roles(self.roles))

    def require(self, action: KmsAction | str) -> None:
        """`require_key_role(self.roles, action)`."""
        require_key_role(self.roles, action)
