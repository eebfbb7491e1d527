"""HTTP gateway: FastAPI app, authentication and enforcement, problem+json, and the `pdx` CLI."""

from gateway.app import create_app
from gateway.platform import Platform, build_platform, initialise
from gateway.settings import Settings

__all__ = ["Platform", "Settings", "build_platform", "create_app", "initialise"]
