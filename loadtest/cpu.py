"""`python -m loadtest.cpu`: CPU per request of the mix's read routes, in process, PEP on and off.

The machine is shared, so requests per second move with everyone else's work; the CPU
time a request costs moves far less. This builds a platform in a fresh `PDX_HOME`
(development, demo seed), registers a few datasets, takes real bearer tokens, and drives
the ASGI app directly on uvloop (as uvicorn serves it, without the sockets and HTTP
parsing) with the five read routes that dominate `locustfile.py`'s mix. Each route is
measured with the enforcement point on and off (`unsafe_bench_no_pep`, development only)
in alternating rounds in one process; the figure is process CPU time (every thread:
worker threads, the decision-log writer) per request, median over the rounds.

`--prefill` stores that many decision logs first: in a 60 s load test the table holds
tens of thousands, and what a write costs depends on it. Run it on two trees (the
`PYTHONPATH` decides which) back to back to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# Share of each route in a load-test mix (bench/work/.../mix_stats.csv, request counts).
MIX_WEIGHTS = {
    "GET /v1/datasets": 12247,
    "GET /v1/datasets/{id}": 15431,
    "GET /v1/ledger/entries/{index}": 5862,
    "GET /v1/ledger/proof/inclusion": 5850,
    "GET /v1/ledger/checkpoint": 1964,
}

Request = tuple[str, str, str]  # path, Authorization header, query string


class InProcess:
    """The app of a fresh platform, called over ASGI without a server."""

    def __init__(self, home: Path) -> None:
        for key in [k for k in os.environ if k.startswith("PDX_")]:
            del os.environ[key]
        os.environ.update(
            PDX_HOME=str(home), PDX_ENV="development", PDX_SEED_DEMO="1", PDX_TOKEN_TTL_S="900"
        )
        from gateway.app import create_app
        from gateway.platform import build_platform, initialise
        from gateway.settings import Settings

        self.platform = build_platform(Settings.from_env())
        creds = initialise(self.platform)
        assert creds is not None
        self.creds = creds
        self.app = create_app(self.platform)

    async def call(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b"", query: str = ""
    ) -> tuple[int, bytes]:
        raw = [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if body:
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": raw,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.Event().wait()  # no disconnect while the app answers
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def bearer(self, client: str) -> str:
        c = self.creds[client]
        form = {"grant_type": "client_credentials", "client_id": c["client_id"]}
        form["client_secret"] = c["client_secret"]
        content_type = {"content-type": "application/x-www-form-urlencoded"}
        status, body = await self.call(
            "POST", "/v1/auth/token", content_type, urlencode(form).encode()
        )
        assert status == 200, body
        return "Bearer " + json.loads(body)["access_token"]

    async def register(self, count: int) -> None:
        from loadtest.run import dataset_metadata, multipart, small_csv

        auth = await self.bearer("provider-transport")
        for i in range(count):
            meta = dataset_metadata(f"cpu-{i}-{os.urandom(3).hex()}")
            body, ctype = multipart(meta, small_csv(50), "sample.csv")
            headers = {"authorization": auth, "content-type": ctype}
            status, out = await self.call("POST", "/v1/datasets", headers, body)
            assert status == 201, out

    def prefill(self, count: int) -> None:
        """Store `count` decision logs through the writer, as earlier requests would have."""
        from datetime import UTC, datetime

        import policies
        from gateway import app as app_module

        # The app's own request ids (a tree before they were time-ordered: random ones).
        random_id: Callable[[], str] = lambda: os.urandom(16).hex()  # noqa: E731
        new_id: Callable[[], str] = getattr(app_module, "new_request_id", random_id)
        now = datetime.now(UTC)
        subject = {"id": "c-prefill", "org": "o-prefill", "org_kind": "enterprise"}
        subject |= {"roles": ["data-consumer"]}
        decision_input = policies.authz_input(
            subject=subject, action="catalog.read", resource={"type": "catalog"}, now=now,
            token_issued_at=now, ip="127.0.0.1",
        )  # fmt: skip
        logs, pdp = self.platform.decision_logs, self.platform.pdp
        assert pdp is not None
        for i in range(count):
            logs.add(pdp.decide(policies.AUTHZ_DECISION, decision_input), new_id())
            if i % 2000 == 1999:
                logs.flush()
        logs.flush()


async def measure(args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    with tempfile.TemporaryDirectory(prefix="pdx-cpu-", ignore_cleanup_errors=True) as work:
        bench = InProcess(Path(work) / "home")
        try:
            return await _measure(bench, args)
        finally:
            bench.platform.engine.dispose()


async def _measure(
    bench: InProcess, args: argparse.Namespace
) -> dict[tuple[str, str], list[float]]:
    app, platform = bench.app, bench.platform
    async with app.router.lifespan_context(app):
        await bench.register(args.seed_datasets)
        platform.sealer.seal_now()
        bench.prefill(args.prefill)
        reader, auditor = await bench.bearer("enterprise-fintech"), await bench.bearer("auditor")
        _, listed = await bench.call(
            "GET", "/v1/datasets", {"authorization": reader}, query="limit=100"
        )
        ids = [d["id"] for d in json.loads(listed)["items"]]
        _, note = await bench.call("GET", "/v1/ledger/checkpoint", {})
        size = int(note.decode().split("\n")[1])
        rng = random.Random(1)
        routes: dict[str, Callable[[], Request]] = {
            "GET /v1/datasets": lambda: ("/v1/datasets", reader, "limit=20"),
            "GET /v1/datasets/{id}": lambda: (f"/v1/datasets/{rng.choice(ids)}", reader, ""),
            "GET /v1/ledger/entries/{index}": lambda: (
                f"/v1/ledger/entries/{rng.randrange(size)}",
                auditor,
                "",
            ),
            "GET /v1/ledger/proof/inclusion": lambda: (
                "/v1/ledger/proof/inclusion",
                auditor,
                f"index={rng.randrange(size)}&tree_size={size}",
            ),
            "GET /v1/ledger/checkpoint": lambda: ("/v1/ledger/checkpoint", auditor, ""),
        }
        settings = {"pep": platform.settings}
        settings["no-pep"] = platform.settings.model_copy(update={"unsafe_bench_no_pep": True})

        async def drive(make: Callable[[], Request], n: int) -> None:
            left = [n]

            async def user() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    path, auth, query = make()
                    status, body = await bench.call(
                        "GET", path, {"authorization": auth}, query=query
                    )
                    assert status == 200, (path, status, body[:200])

            await asyncio.gather(*(user() for _ in range(args.users)))

        samples: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for name, make in routes.items():
                for mode, chosen in settings.items():
                    platform.settings = chosen
                    await drive(make, 20)
                    platform.decision_logs.flush()
                    started = time.process_time()
                    await drive(make, args.requests)
                    platform.decision_logs.flush()
                    spent = time.process_time() - started
                    if round_:
                        samples.setdefault((name, mode), []).append(1000 * spent / args.requests)
        platform.settings = settings["pep"]
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.cpu", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=300, help="requests per route and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=8, help="requests in flight at once")
    p.add_argument("--seed-datasets", type=int, default=12)
    p.add_argument("--prefill", type=int, default=60_000, help="decision logs stored first")
    args = p.parse_args(argv)
    import logging

    import uvloop

    logging.disable(logging.WARNING)
    samples = uvloop.run(measure(args))
    print(f"{'ms CPU per request (median)':34} {'PEP on':>8} {'PEP off':>8} {'PEP cost':>9}")
    totals = {"pep": 0.0, "no-pep": 0.0}
    for name, weight in MIX_WEIGHTS.items():
        on = statistics.median(samples[(name, "pep")])
        off = statistics.median(samples[(name, "no-pep")])
        totals["pep"] += on * weight
        totals["no-pep"] += off * weight
        print(f"{name:34} {on:8.3f} {off:8.3f} {on - off:9.3f}")
    share = sum(MIX_WEIGHTS.values())
    on, off = totals["pep"] / share, totals["no-pep"] / share
    print(f"{'mix-weighted':34} {on:8.3f} {off:8.3f} {on - off:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
