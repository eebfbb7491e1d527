"""Sorted sets of 32-byte PSI elements: dedupe, membership, and shuffles (`sandbox.psi`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sandbox.errors import InvalidParameters

__all__ = ["ELEMENT", "ELEMENT_DTYPE", "SortedSet", "permutation", "unique_messages"]

ELEMENT = 32
"""A PSI message (input) or a doubly blinded abscissa: the values compared."""
ELEMENT_DTYPE = f"S{ELEMENT}"
"""numpy dtype of an array of elements."""


def permutation(n: int) -> np.ndarray[Any, Any]:
    """A uniform permutation of range(n) from os.urandom (ties have probability ~n²/2^65)."""
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) if n else np.empty(0, np.uint64)
    return np.argsort(keys, kind="stable")


def unique_messages(messages: Sequence[bytes]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(sorted distinct messages as S32, index of each input row into them)."""
    if any(len(m) != ELEMENT for m in messages):
        raise InvalidParameters("PSI messages must be 32 bytes (use identifiers.JobDomain)")
    arr = np.frombuffer(b"".join(messages), dtype=ELEMENT_DTYPE)
    order = _prefix_order(arr)
    if order is None:  # repeated 8-byte prefixes (duplicates, or a 2^-64 coincidence)
        uniq, inverse = np.unique(arr, return_inverse=True)
        return uniq, inverse
    inverse = np.empty(len(arr), dtype=np.intp)
    inverse[order] = np.arange(len(arr))
    return arr[order], inverse


def _prefixes(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The first 8 bytes of each 32-byte element as a native uint64 (same order as bytes)."""
    return np.ascontiguousarray(arr).view(">u8").reshape(-1, ELEMENT // 8)[:, 0].astype(np.uint64)


def _prefix_order(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """The byte order of `arr`, sorting 8-byte prefixes (half the cost of sorting S32).

    None when two prefixes are equal (then only the full bytes decide).
    """
    keys = _prefixes(arr)
    order = np.argsort(keys)
    ranked = keys[order]
    return None if bool(np.any(ranked[1:] == ranked[:-1])) else order


class SortedSet:
    """Membership in a fixed set of encoded elements (sorted once, binary search per batch).

    Blinded abscissae are uniform, so their first 8 bytes almost surely differ: then the set
    is sorted and searched on those prefixes as uint64 and each candidate is confirmed on
    all 32 bytes; if two prefixes coincide, it sorts and searches the full bytes instead.
    """

    def __init__(self, elements: np.ndarray[Any, Any]) -> None:
        order = _prefix_order(elements)
        self.order = order if order is not None else np.argsort(elements, kind="stable")
        self.sorted = elements[self.order]
        self._keys = _prefixes(self.sorted) if order is not None else None

    def hits(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Boolean mask over `batch`: which elements are in the set."""
        if len(self.sorted) == 0:
            return np.zeros(len(batch), dtype=bool)
        if self._keys is None:
            pos = np.searchsorted(self.sorted, batch)
        else:
            pos = np.searchsorted(self._keys, _prefixes(batch))
        pos = np.minimum(pos, len(self.sorted) - 1)
        return np.asarray(self.sorted[pos] == batch)
