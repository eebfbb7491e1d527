"""Isolated execution of vetted operators on provider data; built by the computation issue."""

__all__: list[str] = []
