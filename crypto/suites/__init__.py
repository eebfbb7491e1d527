"""Primitive layer under `crypto`: AEAD suites and the key-wrap blob format (hazmat)."""
