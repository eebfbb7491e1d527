"""HTTP gateway: FastAPI app, authentication and enforcement, problem+json, and the `pdx` CLI.

The public names load on first use (PEP 562), so `pdx` verbs that need no web app
(backup, kms, ledger, bench) start without importing FastAPI and every router.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.platform import Platform, build_platform, initialise
    from gateway.settings import Settings

__all__ = ["Platform", "Settings", "build_platform", "create_app", "initialise"]

_HOMES = {
    "create_app": "gateway.app",
    "Platform": "gateway.platform",
    "build_platform": "gateway.platform",
    "initialise": "gateway.platform",
    "Settings": "gateway.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    return getattr(import_module(home), name)
