"""The integer bounds' per-route cache lives and dies with its route.

It was keyed by `id(route)`: once an app was gone, a route of a later app could reuse a
dead route's address and be checked with the dead route's parameters, so a huge `start`
got the validator's generic 422 instead of `integer-out-of-range` (seen once in the full
suite, on PostgreSQL: tests/attacks/test_leaks.py::test_huge_ledger_indexes_are_stable_problems).
"""

from __future__ import annotations

import gc

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from gateway import edges, errors


def _app(with_start: bool) -> FastAPI:
    app = FastAPI(dependencies=[Depends(edges.bound_integers)])
    errors.install(app)

    if with_start:

        @app.get("/entries")
        def entries(start: int = 0) -> dict[str, int]:
            return {"start": start}

    else:

        @app.get("/entries")
        def no_start() -> dict[str, int]:
            return {}

    return app


def test_each_route_is_checked_with_its_own_parameters() -> None:
    # Everything earlier tests left is set aside (`gc.freeze`): each `gc.collect` below then
    # walks only this test's objects, the apps it drops among them, and not the whole heap
    # of a worker that has run hundreds of tests (a minute over 100 collections in a full run).
    gc.freeze()
    try:
        _make_and_drop_apps()
    finally:
        gc.unfreeze()


def _make_and_drop_apps() -> None:
    old = _app(with_start=False)
    with TestClient(old) as client:
        assert client.get("/entries").status_code == 200
    del old, client
    gc.collect()
    # Apps made and dropped until one's route sits where a dropped one's did: the case
    # that met the dead route's cached parameters.
    for _ in range(50):
        app = _app(with_start=True)
        with TestClient(app) as client:
            r = client.get(f"/entries?start={10**30}")
            assert r.status_code == 422 and r.json()["type"].endswith("/integer-out-of-range")
        dropped = _app(with_start=False)
        with TestClient(dropped) as client:
            assert client.get("/entries").status_code == 200
        del app, dropped, client
        gc.collect()


def test_the_parameters_live_on_the_route() -> None:
    app = _app(with_start=True)
    with TestClient(app) as client:
        client.get("/entries?start=1")
    route = next(r for r in app.routes if getattr(r, "path", "") == "/entries")
    assert getattr(route, edges._ROUTE_PARAMS) == ((), ("start",))
