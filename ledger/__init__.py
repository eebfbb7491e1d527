"""Verifiable log (RFC 9162 Merkle tree, signed checkpoints); built by the ledger issue."""

__all__: list[str] = []
