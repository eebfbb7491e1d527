"""`pdx bench ingest`: end-to-end registration throughput and peak RSS for a generated CSV.

Each measured run is a fresh child process that builds an embedded platform (SQLite,
local key store) and registers the file through `exchange.Registration` exactly as the
gateway does (1 MiB feeds; scan + digest + encrypt + store + commit), so the peak RSS
reported is that of the registering process alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.datagen import write_transit_csv

FEED = 1 << 20


def dataset(size_mb: int) -> Path:
    report.WORK.mkdir(parents=True, exist_ok=True)
    path = report.WORK / f"transit_{size_mb}mb.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            write_transit_csv(f, target_bytes=size_mb << 20, seed=11)
        tmp.rename(path)
    return path


META = {
    "name": "bench",
    "classification_path": ["transport", "transit", "trips"],
    "level": "general-4",
    "impact_object": "individual-rights",
    "impact_degree": "serious",
    "source_agency": "bench",
    "accountable_department": "bench",
    "pi": True,
    "sensitive_pi": True,
    "share_attribute": "conditional",
    "open_attribute": "conditional",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(csv_path: Path, http: bool) -> None:
    from gateway.platform import build_platform, initialise
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory(prefix="pdx-bench-") as home:
        settings = Settings(
            home=Path(home), database_url=f"sqlite:///{home}/pdx.db", max_upload_bytes=8 << 30
        )
        platform = build_platform(settings)
        creds = initialise(platform)
        assert creds is not None
        run = _via_http if http else _via_service
        print(json.dumps(run(platform, creds["provider-transport"], csv_path)))


def _via_service(platform: Any, c: dict[str, Any], csv_path: Path) -> dict[str, float]:
    """Registration exactly as the gateway drives it (1 MiB feeds), without HTTP."""
    import exchange

    caller = exchange.Caller(
        client_id=c["client_id"],
        org_id=c["org_id"],
        org_kind=exchange.OrgKind.PROVIDER,
        roles=frozenset({exchange.Role.DATA_PROVIDER}),
    )
    baseline_mb = _rss_mb()
    start = time.perf_counter()
    reg = exchange.Registration(platform.catalog, caller, now=platform.now())
    reg.metadata(json.dumps(META).encode(), platform.session)
    with open(csv_path, "rb") as f:
        while chunk := f.read(FEED):
            reg.write(chunk)
    ds = reg.complete(platform.session)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": _rss_mb(),
        "baseline_rss_mb": baseline_mb,
        "rows": ds.rows,
    }


def _via_http(platform: Any, c: dict[str, Any], csv_path: Path) -> dict[str, float]:
    """The same registration through the real gateway: uvicorn on loopback, streamed upload.

    Client and server share the process, so the peak RSS includes the client's (small,
    streaming) share as well.
    """
    import socket
    import threading

    import httpx
    import uvicorn

    from gateway.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=600) as client:
        while not server.started:
            time.sleep(0.05)
        token = client.post(
            "/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": c["client_id"],
                "client_secret": c["client_secret"],
            },
        ).json()["access_token"]
        baseline_mb = _rss_mb()
        start = time.perf_counter()
        with open(csv_path, "rb") as f:
            r = client.post(
                "/v1/datasets",
                headers={"Authorization": f"Bearer {token}"},
                files={
                    "metadata": (None, json.dumps(META), "application/json"),
                    "file": ("bench.csv", f, "text/csv"),
                },
            )
        seconds = time.perf_counter() - start
    server.should_exit = True
    thread.join()
    if r.status_code != 201:
        raise SystemExit(f"registration over HTTP failed: {r.status_code} {r.text[:300]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": _rss_mb(),
        "baseline_rss_mb": baseline_mb,
        "rows": r.json()["rows"],
    }


def _measure(csv_path: Path, *, http: bool = False) -> dict[str, float]:
    args = ["--http"] if http else []
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--child", str(csv_path), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> Path:
    size_mb = 64 if quick else 1024
    runs = 1 if quick else 3
    path = dataset(size_mb)
    size = path.stat().st_size
    _measure(dataset(16))  # warm-up: imports, page cache, first-start seeding path
    # Service and HTTP runs alternate so both see the same machine conditions.
    results, http_results = [], []
    for _ in range(runs):
        results.append(_measure(path))
        http_results.append(_measure(path, http=True))
    speed = report.median([size / 1e6 / r["seconds"] for r in results])
    peak = max(r["peak_rss_mb"] for r in results)
    http_speed = report.median([size / 1e6 / r["seconds"] for r in http_results])
    http_peak = max(r["peak_rss_mb"] for r in http_results)
    return report.write(
        "ingest",
        {"csv_bytes": size, "rows": int(results[0]["rows"]), "runs": runs, "feed_bytes": FEED},
        {
            "ingest_mb_per_s": report.Metric(round(speed, 1), "MB/s", ">= 50", speed >= 50),
            "ingest_peak_rss_mb": report.Metric(round(peak, 1), "MB", "< 300", peak < 300),
            "ingest_baseline_rss_mb": report.Metric(
                round(report.median([r["baseline_rss_mb"] for r in results]), 1), "MB"
            ),
            "ingest_http_mb_per_s": report.Metric(round(http_speed, 1), "MB/s"),
            "ingest_http_peak_rss_mb": report.Metric(round(http_peak, 1), "MB"),
            "http_vs_service": report.Metric(round(http_speed / speed, 2), "x"),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    parser.add_argument("--http", action="store_true")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.http)
    else:
        print(run())


if __name__ == "__main__":
    main()
