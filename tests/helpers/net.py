"""Sockets and bytes for tests: a free local port, a one-bit change."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flip(data: bytes, index: int) -> bytes:
    """`data` with the lowest bit of byte `index` flipped (a minimal tampering)."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
