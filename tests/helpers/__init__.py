"""Helpers and fixtures shared by the test modules (the fixtures live in tests/conftest.py)."""
