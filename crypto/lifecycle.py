"""Key lifecycle: purposes, states, the allowed-transition table and the rotation policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from crypto.errors import KeyStateTransitionInvalid


class KeyPurpose(StrEnum):
    """What a key may be used for: one purpose per key (GB/T 39786-2021 Annex B)."""

    DATA_ENCRYPTION = "data-encryption"
    KEY_WRAPPING = "key-wrapping"
    SIGNING = "signing"
    TOKEN_SIGNING = "token-signing"
    LEDGER_SIGNING = "ledger-signing"
    TLS_CA = "tls-ca"
    # secp256k1 keys that sign EVM transactions anchoring the ledger (issue 19). Not in
    # the rotation policy: a new version is a new chain account, which the anchor
    # contract's owner must register as a writer before the old one is retired.
    CHAIN_SIGNING = "chain-signing"


class KeyState(StrEnum):
    """Lifecycle states, after NIST SP 800-57 Part 1 rev. 5 section 7.

    - `pre-active`: generated, not yet to be used (e.g. `not_before` in the future).
    - `active`: protects (wraps, signs) and processes (unwraps, verifies).
    - `suspended`: temporarily unusable for anything until resumed.
    - `deactivated`: processes only: old versions after rotation, archived keys.
    - `compromised`: processes only, so that data can be moved away from it; never
      protects again and its public key is no longer published.
    - `destroyed`: material zeroised; irreversible (GB/T 39786-2021 Annex B).
    """

    PRE_ACTIVE = "pre-active"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    COMPROMISED = "compromised"
    DESTROYED = "destroyed"


# The explicit allowed-transition table. There is no way back from destroyed, and no
# direct active -> destroyed: destruction first deactivates (SP 800-57 figure 3).
TRANSITIONS: Mapping[KeyState, frozenset[KeyState]] = MappingProxyType(
    {
        KeyState.PRE_ACTIVE: frozenset({KeyState.ACTIVE, KeyState.COMPROMISED, KeyState.DESTROYED}),
        KeyState.ACTIVE: frozenset(
            {KeyState.SUSPENDED, KeyState.DEACTIVATED, KeyState.COMPROMISED}
        ),
        KeyState.SUSPENDED: frozenset(
            {KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.COMPROMISED}
        ),
        KeyState.DEACTIVATED: frozenset({KeyState.COMPROMISED, KeyState.DESTROYED}),
        KeyState.COMPROMISED: frozenset({KeyState.DESTROYED}),
        KeyState.DESTROYED: frozenset(),
    }
)

# States in which a key may protect new data (wrap a data key, sign).
PROTECT_STATES = frozenset({KeyState.ACTIVE})
# States in which a key may still process protected data (unwrap, publish to verify).
PROCESS_STATES = frozenset({KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.COMPROMISED})


def key_state(value: str) -> KeyState:
    """Parse a stored state; `KeyStateTransitionInvalid` for a value not in the table."""
    try:
        return KeyState(value)
    except ValueError:
        raise KeyStateTransitionInvalid("unknown key state", state=value) from None


def check_transition(current: str, target: KeyState) -> None:
    """Raise `KeyStateTransitionInvalid` unless `current -> target` is in `TRANSITIONS`."""
    if target not in TRANSITIONS[key_state(current)]:
        raise KeyStateTransitionInvalid(
            f"a {current} key cannot become {target.value}", state=current, target=target.value
        )


def _days(n: int) -> timedelta:
    return timedelta(days=n)


@dataclass(frozen=True)
class RotationPolicy:
    """Scheduled rotation: the maximum age of a key's active version, per purpose.

    A purpose absent from `max_age` is never due by age (data keys are per object and
    replaced with their object, not rotated). Defaults follow NIST SP 800-57 Part 1
    table 1's cryptoperiods: at most two years for symmetric key-wrapping keys, one to
    three for signing keys; token-signing keys rotate often because every access token
    names them.
    """

    max_age: Mapping[KeyPurpose, timedelta] = field(
        default_factory=lambda: {
            KeyPurpose.KEY_WRAPPING: _days(365),
            KeyPurpose.SIGNING: _days(365),
            KeyPurpose.LEDGER_SIGNING: _days(730),
            KeyPurpose.TOKEN_SIGNING: _days(90),
            KeyPurpose.TLS_CA: _days(1825),
        }
    )

    def __post_init__(self) -> None:
        frozen = {KeyPurpose(purpose): age for purpose, age in self.max_age.items()}
        for purpose, age in frozen.items():
            if age <= timedelta(0):
                raise ValueError(f"max age of {purpose.value} keys must be positive")
        object.__setattr__(self, "max_age", MappingProxyType(frozen))

    def due_at(self, purpose: str, active_since: datetime) -> datetime | None:
        """When a version active since `active_since` is due, or None if never by age."""
        try:
            age = self.max_age.get(KeyPurpose(purpose))
        except ValueError:
            return None
        return None if age is None else active_since + age


DEFAULT_ROTATION_POLICY = RotationPolicy()
