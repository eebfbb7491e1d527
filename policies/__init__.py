"""Rego policies and the policy decision point; built by the policy issue."""

__all__: list[str] = []
