"""Key management: inventory, scheduled rotation with re-wrap, state changes, two-person destroy.

`KeyManager` is assembled from one part per concern: reading and the rotation schedule
(`crypto._kms_inventory`), generation and state changes (`crypto._kms_states`), rotation
with re-wrap (`crypto._kms_rotation`) and destruction under the two-person rule
(`crypto._kms_destruction`); what they report is in `crypto._kms_views`. Import the names
from here: the modules behind them may move.
"""

from __future__ import annotations

from crypto._kms_destruction import _KeyDestruction
from crypto._kms_inventory import _KeyInventory
from crypto._kms_rotation import _KeyRotation
from crypto._kms_states import _KeyStateChanges
from crypto._kms_views import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DESTROY_REQUEST_TTL,
    DestroyRequest,
    KeyInfo,
    RotationDue,
    RotationProgress,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DESTROY_REQUEST_TTL",
    "DestroyRequest",
    "KeyInfo",
    "KeyManager",
    "RotationDue",
    "RotationProgress",
]


class KeyManager(_KeyInventory, _KeyStateChanges, _KeyRotation, _KeyDestruction):
    """The KMS administrative operations over a `KeyStore`, each checked with `KeyActor`.

    Every method calls `require_key_role` (through `by.require`) first, takes the
    caller's session, and — except `rotate` — only flushes. Every state change goes
    through `crypto.lifecycle.TRANSITIONS` and emits a `KeyEvent` through the
    keystore's sink.

    Destruction zeroises `wrapped_material` (and the wrapped data keys under a KEK)
    in the database row. What it cannot reach: old row versions PostgreSQL keeps until
    VACUUM, and database or key backups taken before. Shredding is complete once those
    age out; key backups (`crypto.backup`) should be destroyed on the same schedule.
    """
