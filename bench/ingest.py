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


def _child(csv_path: Path) -> None:
    import exchange
    from gateway.platform import build_platform, initialise
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory(prefix="pdx-bench-") as home:
        settings = Settings(
            home=Path(home), database_url=f"sqlite:///{home}/pdx.db", max_upload_bytes=8 << 30
        )
        platform = build_platform(settings)
        creds = initialise(platform)
        assert creds is not None
        c = creds["provider-transport"]
        caller = exchange.Caller(
            client_id=c["client_id"],
            org_id=c["org_id"],
            org_kind=exchange.OrgKind.PROVIDER,
            roles=frozenset({exchange.Role.DATA_PROVIDER}),
        )
        meta = {
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
        baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        reg = exchange.Registration(platform.catalog, caller, now=platform.now())
        reg.metadata(json.dumps(meta).encode(), platform.session)
        with open(csv_path, "rb") as f:
            while chunk := f.read(FEED):
                reg.write(chunk)
        ds = reg.complete(platform.session)
        seconds = time.perf_counter() - start
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "peak_rss_mb": rss_mb,
                    "baseline_rss_mb": baseline_mb,
                    "rows": ds.rows,
                }
            )
        )


def _measure(csv_path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--child", str(csv_path)],
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
    results = [_measure(path) for _ in range(runs)]
    mbps = [size / 1e6 / r["seconds"] for r in results]
    rss = [r["peak_rss_mb"] for r in results]
    speed = report.median(mbps)
    peak = max(rss)
    return report.write(
        "ingest",
        {"csv_bytes": size, "rows": int(results[0]["rows"]), "runs": runs, "feed_bytes": FEED},
        {
            "ingest_mb_per_s": report.Metric(round(speed, 1), "MB/s", ">= 50", speed >= 50),
            "ingest_peak_rss_mb": report.Metric(round(peak, 1), "MB", "< 300", peak < 300),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
    else:
        print(run())


if __name__ == "__main__":
    main()
