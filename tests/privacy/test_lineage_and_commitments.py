"""The lineage digest and the keyed commitments, as data: what must and must not collide."""

from __future__ import annotations

import random

from exchange.budgets import rows_digest
from exchange.commitments import canonical, commit, verify


def _digest(text: str, chunk: int = 7) -> str:
    data = text.encode()
    return rows_digest(iter([data[i : i + chunk] for i in range(0, len(data), chunk)]))


ROWS = [f"R{i:03d},{random.Random(i).randrange(90, 180)},{i % 3}" for i in range(50)]


def test_a_shuffled_copy_with_reordered_columns_shares_the_lineage() -> None:
    original = "ref,bp,ward\n" + "\n".join(ROWS) + "\n"
    shuffled = list(ROWS)
    random.Random(1).shuffle(shuffled)
    reordered = "ward,ref,bp\n" + "\n".join(
        ",".join((w, r, b)) for r, b, w in (x.split(",") for x in shuffled)
    )
    assert _digest(original) == _digest(reordered, chunk=13) == _digest(original, chunk=4096)


def test_another_row_set_is_another_lineage() -> None:
    original = "ref,bp,ward\n" + "\n".join(ROWS) + "\n"
    one_changed = "ref,bp,ward\n" + "\n".join([*ROWS[:-1], "R049,181,1"]) + "\n"
    one_dropped = "ref,bp,ward\n" + "\n".join(ROWS[:-1]) + "\n"
    duplicated = "ref,bp,ward\n" + "\n".join([*ROWS, ROWS[0]]) + "\n"
    digests = {_digest(t) for t in (original, one_changed, one_dropped, duplicated)}
    assert len(digests) == 4  # a multiset: a duplicated row counts


def test_a_commitment_opens_only_with_its_key_kind_and_document() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    doc = canonical({"count": 200})
    c = commit(key, "result", doc)
    assert verify(c, key.hex(), "result", doc)
    assert not verify(c, other.hex(), "result", doc)
    assert not verify(c, key.hex(), "query", doc)
    assert not verify(c, key.hex(), "result", canonical({"count": 201}))
    assert not verify(c, "not hex", "result", doc)
    # Without the key, the 1,000 small counts do not reproduce it.
    assert all(commit(other, "result", canonical({"count": n})) != c for n in range(1000))
