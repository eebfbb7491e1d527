"""KMS key generation, state changes (activate, suspend, resume, archive, revoke), distribution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from crypto._kms_core import _KeyManagerCore
from crypto._kms_views import KeyInfo, _info
from crypto.errors import KeyNotActive, KeyPurposeMismatch, KeyStateTransitionInvalid
from crypto.events import KeyOperation
from crypto.keymaterial import (
    MANAGED_PURPOSES,
    PublicKey,
    event_for,
    kek_algorithm,
    key_id_for,
    require_aware,
    signing_algorithm,
)
from crypto.lifecycle import KeyPurpose, KeyState
from crypto.roles import KeyActor, KmsAction
from crypto.suites.suite import suite as cipher_suite


@dataclass(frozen=True)
class _StateChange:
    """One state-change verb: the role action it needs, its event and its target state.

    `only_from` names the one state it may start from and the past participle for the
    refusal; otherwise `crypto.lifecycle.TRANSITIONS` alone decides (in `_change_state`).
    """

    action: KmsAction
    operation: KeyOperation
    target: KeyState
    only_from: tuple[KeyState, str] | None = None
    reasoned: bool = True
    """The event's detail is the caller's reason; otherwise it names who changed the state."""


KeyVerb = Literal["activate", "suspend", "resume", "archive", "revoke"]
"""A state change of one key version, named as the API names it."""

_VERBS: dict[str, _StateChange] = {
    # pre-active → active
    "activate": _StateChange(
        KmsAction.ACTIVATE,
        KeyOperation.ACTIVATE,
        KeyState.ACTIVE,
        only_from=(KeyState.PRE_ACTIVE, "activated"),
        reasoned=False,
    ),
    # active → suspended: no protecting or processing until resumed
    "suspend": _StateChange(KmsAction.SUSPEND, KeyOperation.SUSPEND, KeyState.SUSPENDED),
    # suspended → active
    "resume": _StateChange(
        KmsAction.RESUME,
        KeyOperation.RESUME,
        KeyState.ACTIVE,
        only_from=(KeyState.SUSPENDED, "resumed"),
        reasoned=False,
    ),
    # → deactivated: the version only processes (unwraps, verifies) from now on
    "archive": _StateChange(
        KmsAction.ARCHIVE, KeyOperation.ARCHIVE, KeyState.DEACTIVATED, reasoned=False
    ),
    # → compromised: a compromised KEK version still unwraps, so that `rotate` can move
    # its data keys to a fresh version (it appears in `due_for_rotation` until it does);
    # a compromised signing key is no longer published
    "revoke": _StateChange(KmsAction.REVOKE, KeyOperation.REVOKE, KeyState.COMPROMISED),
}


class _KeyStateChanges(_KeyManagerCore):
    """Generating a key and moving its versions through `crypto.lifecycle.TRANSITIONS`."""

    # -- generation, state changes -------------------------------------------------------

    def generate_key(
        self,
        session: Session,
        *,
        purpose: str,
        owner_org: str | None = None,
        by: KeyActor,
        now: datetime,
        suite: str | None = None,
        algorithm: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> KeyInfo:
        """Generate a key ahead of first use: an organisation's KEK under a chosen suite, say.

        KEKs need `owner_org`; signing keys are platform-wide (`owner_org` None). The
        version starts pre-active if `not_before` is in the future (`change_state` activates
        it later), active otherwise. Refused while the key has a version that is not
        destroyed: `rotate` it instead. After a shredding this re-provisions the
        organisation with a new KEK version.
        """
        by.require(KmsAction.GENERATE)
        require_aware(now)
        chosen = KeyPurpose(purpose)
        if chosen not in MANAGED_PURPOSES:
            raise KeyPurposeMismatch("data keys are made per object, not here", purpose=purpose)
        if (chosen is KeyPurpose.KEY_WRAPPING) != (owner_org is not None):
            raise ValueError("KEKs have an owner organisation; signing keys have none")
        key_id = key_id_for(chosen, owner_org)
        live = [r for r in self._versions(session, key_id) if r.state != KeyState.DESTROYED]
        if live:
            raise KeyStateTransitionInvalid(
                "the key already exists: rotate it instead", key_id=key_id
            )
        picked = cipher_suite(suite) if suite is not None else self._store.suite
        if algorithm is None:
            algorithm = (
                kek_algorithm(picked)
                if chosen is KeyPurpose.KEY_WRAPPING
                else signing_algorithm(picked, chosen)
            )
        state = KeyState.PRE_ACTIVE if not_before and not_before > now else KeyState.ACTIVE
        row = self._store._create_key(
            session,
            key_id,
            chosen,
            owner_org,
            now,
            algorithm=algorithm,
            state=state,
            not_before=not_before,
            not_after=not_after,
            actor=by.id,
            detail=f"generated by {by.id}",
        )
        return _info(row, 0 if chosen is KeyPurpose.KEY_WRAPPING else None)

    def change_state(
        self,
        session: Session,
        key_id: str,
        version: int,
        verb: KeyVerb,
        *,
        by: KeyActor,
        now: datetime,
        reason: str = "",
    ) -> KeyInfo:
        """Activate, suspend, resume, archive or revoke one version (see `_VERBS`).

        The role check, the transition and its event; `reason` is recorded for a
        suspension or a revocation.
        """
        change = _VERBS[verb]
        by.require(change.action)
        row = self._row(session, key_id, version)
        if change.only_from is not None and row.state != change.only_from[0]:
            raise KeyStateTransitionInvalid(f"a {row.state} key cannot be {change.only_from[1]}")
        detail = reason if change.reasoned else f"by {by.id}"
        self._store._change_state(session, row, change.target, now, change.operation, detail, by.id)
        return _info(row, None)

    def distribute(
        self,
        session: Session,
        key_id: str,
        version: int | None = None,
        *,
        recipient: str,
        by: KeyActor,
        now: datetime,
    ) -> PublicKey:
        """Hand the public half of a signing key to `recipient` (a relying party, witness).

        Secret keys (KEKs, data keys) are never distributed: they leave the module only
        wrapped, in backups.
        """
        by.require(KmsAction.DISTRIBUTE)
        require_aware(now)
        rows = self._rows(session, key_id)
        row = rows[0] if version is None else self._row(session, key_id, version)
        if row.purpose == KeyPurpose.KEY_WRAPPING:
            raise KeyPurposeMismatch("secret keys are never distributed", key_id=key_id)
        published = self._store.public_keys(session, purpose=row.purpose)
        public = next(
            (k for k in published if (k.key_id, k.version) == (row.id, row.version)), None
        )
        if public is None:
            raise KeyNotActive(f"a {row.state} key is not published", key_id=key_id)
        self._store._emit(
            session,
            event_for(KeyOperation.DISTRIBUTE, row, f"public key to {recipient}", actor=by.id),
        )
        return public
