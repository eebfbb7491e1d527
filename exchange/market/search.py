"""Chinese-aware full-text search over listings: jieba tokens beside the text, an FTS index.

Text is segmented with jieba when a product is written (search mode: every word and
its sub-words, `cut_for_search`) and stored space-separated in `search_tokens`; a
query is segmented in precise mode (`cut`), so each query word is one index term.
The index is SQLite FTS5 (a derived virtual table kept here, since a virtual table
and its shadow tables cannot be declared among the models) or PostgreSQL full text
(a GIN index on `to_tsvector('simple', search_tokens)`, migration 0024). No LIKE scans.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, column, func, literal_column, select, table, text
from sqlalchemy.orm import Session

from exchange.market.models import Product

__all__ = [
    "count_in_index",
    "ensure_index",
    "facet_terms",
    "index_many",
    "index_product",
    "index_tokens",
    "query_tokens",
    "restrict",
]

_T = TypeVar("_T", bound=tuple[Any, ...])

FTS_TABLE = "market_search"
MAX_QUERY_TERMS = 16
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_jieba_lock = threading.Lock()
_jieba_ready = False

# jieba (and the pkg_resources it loads) is imported where text is segmented, not here:
# every server and `pdx` process imports the market, and most never search or list a product.


def _jieba() -> Any:  # jieba has no type information
    """jieba, imported and its dictionary loaded on first use."""
    global _jieba_ready
    import jieba

    with _jieba_lock:
        if not _jieba_ready:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba_ready = True
    return jieba


def _keep(token: str) -> str | None:
    token = unicodedata.normalize("NFKC", token).strip().lower()
    if not token or not any(ch.isalnum() for ch in token):
        return None
    # FTS5 and tsquery syntax characters never reach the index or a query.
    cleaned = "".join(ch for ch in token if ch.isalnum() or ch in "-_")
    return cleaned or None


def index_tokens(*texts: str) -> str:
    """The space-separated index terms of `texts` (jieba search mode, NFKC, lowercase)."""
    jieba = _jieba()
    seen: dict[str, None] = {}
    for t in texts:
        for raw in jieba.cut_for_search(t):
            token = _keep(raw)
            if token is not None:
                seen[token] = None
    return " ".join(seen)


def query_tokens(query: str) -> list[str]:
    """The terms of a query (jieba precise mode); all must match."""
    jieba = _jieba()
    seen: dict[str, None] = {}
    for raw in jieba.cut(query):
        token = _keep(raw)
        if token is not None:
            seen[token] = None
    return list(seen)[:MAX_QUERY_TERMS]


def facet_terms(**facets: str | None) -> list[str]:
    """Index terms for exact-match fields (state, domain, grade): `f` + hex of `name=value`.

    Hex keeps them one unicode61 token each, apart from any word a provider could write.
    """
    return [
        "f" + f"{name}={value}".encode().hex()
        for name, value in sorted(facets.items())
        if value is not None
    ]


def _product_facets(product: Product) -> str:
    return " ".join(facet_terms(state=product.state, domain=product.domain, grade=product.grade))


def ensure_index(session: Session) -> None:
    """Create SQLite's FTS5 table once per database (a no-op on PostgreSQL).

    The table is derived from the listed products: made (or remade, from an older layout
    without facets) here, and filled from them, so a restored or upgraded database
    searches every listing.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine in _ready or engine.dialect.name != "sqlite":
        return
    layout = session.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": FTS_TABLE}
    )
    if layout is None or "facets" not in layout:
        if layout is not None:
            session.execute(text(f"DROP TABLE {FTS_TABLE}"))
        session.execute(
            text(
                f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
                "product_id UNINDEXED, tokens, facets, "
                "tokenize = 'unicode61 remove_diacritics 0')"
            )
        )
        listed = session.scalars(select(Product).where(Product.state == "listed"))
        _insert(session, [(p.id, p.search_tokens, _product_facets(p)) for p in listed])
    _ready.add(engine)


def _insert(session: Session, rows: list[tuple[str, str, str]]) -> None:
    if rows:
        session.execute(
            text(
                f"INSERT INTO {FTS_TABLE} (product_id, tokens, facets) "
                "VALUES (:id, :tokens, :facets)"
            ),
            [{"id": i, "tokens": t, "facets": f} for i, t, f in rows],
        )


def index_product(session: Session, product: Product) -> None:
    """(Re)index one product, in the caller's transaction: only a listed one is searchable."""
    if session.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL indexes the column itself
    ensure_index(session)
    session.execute(text(f"DELETE FROM {FTS_TABLE} WHERE product_id = :id"), {"id": product.id})
    if product.state == "listed":
        _insert(session, [(product.id, product.search_tokens, _product_facets(product))])


def index_many(session: Session, products: Iterable[Product]) -> None:
    """Index many newly listed products at once (bulk loads, the bench)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    ensure_index(session)
    _insert(
        session,
        [(p.id, p.search_tokens, _product_facets(p)) for p in products if p.state == "listed"],
    )


def _match(terms: list[str], facets: Sequence[str]) -> str:
    quoted = " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)
    match = f"tokens : ({quoted})"
    if facets:
        match += " AND facets : (" + " AND ".join(facets) + ")"
    return match


def restrict(
    session: Session, stmt: Select[_T], terms: list[str], facets: Sequence[str] = ()
) -> Select[_T]:
    """`stmt` (over `Product`) limited to products whose index terms include every term.

    SQLite: a join that drives from the FTS5 match (then a primary-key lookup per hit);
    written as `id IN (subquery)` the planner scanned the products instead. `facets`
    (`facet_terms`) narrow the match inside the index, before any lookup; the caller
    keeps its own conditions on the same fields.
    PostgreSQL: the GIN-indexed `to_tsvector('simple', search_tokens) @@ plainto_tsquery`.
    """
    if session.get_bind().dialect.name == "sqlite":
        ensure_index(session)
        hits = table(FTS_TABLE, column("product_id"), column(FTS_TABLE))
        return stmt.join(hits, hits.c.product_id == Product.id).where(
            text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=_match(terms, facets))
        )
    vector = func.to_tsvector(literal_column("'simple'"), Product.search_tokens)
    query = func.plainto_tsquery(literal_column("'simple'"), " ".join(terms))
    return stmt.where(vector.bool_op("@@")(query))


def count_in_index(session: Session, terms: list[str], facets: Sequence[str]) -> int | None:
    """How many listings match, counted in SQLite's index alone (no lookup per hit).

    None on PostgreSQL, where the caller counts with `restrict`.
    """
    if session.get_bind().dialect.name != "sqlite":
        return None
    ensure_index(session)
    return int(
        session.scalar(
            text(f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q"),
            {"q": _match(terms, facets)},
        )
        or 0
    )
