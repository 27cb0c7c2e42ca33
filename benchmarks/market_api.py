"""Catalog read throughput and latency of the market API over loopback.

What it does
------------
1. Seeds a fresh market (SQLite file in a temporary data home by default, or the
   PostgreSQL database given with ``--database-url``): sellers, ``--products`` published
   and listed products with real CSV uploads.
2. Starts the real server (``databazaar.cli.market.serve``, i.e. uvicorn with one
   worker) in a subprocess on a free port of 127.0.0.1.
3. For each read scenario (browse the catalog, full-text search, product page), runs a
   bounded closed-loop load for each level of ``--concurrency`` (default ``1,16``):
   that many clients share ``--requests`` requests (each client sends its next request
   when the previous answer arrived), after ``--warmup`` unmeasured requests.  With one
   client the latency is the service time; with 16 it includes queueing.
4. Records throughput (requests per second of wall time) and p50/p90/p99/max latency
   to ``benchmarks/results/market_api.json`` and ``.md``.

Run: ``python benchmarks/market_api.py`` (add ``--database-url postgresql+psycopg://...``
for PostgreSQL).  Numbers depend on the machine; the JSON records it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = [
    "weather", "sensor", "traffic", "retail", "clinical", "speech", "satellite", "finance",
    "energy", "genomics", "reviews", "images", "fraud", "soil", "ocean", "transit",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _csv(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{i % 2}" for i, r in
                                enumerate(x)]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def seed_market(url: str, home: Path, n_products: int) -> list[str]:
    """Create sellers and ``n_products`` listed products; return their slugs."""
    from argon2 import PasswordHasher

    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

    db = Database.from_url(url)
    upgrade(db.engine)
    market = Market(db, home, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024))
    rng = random.Random(0)
    sellers = [market.create_account(f"seller-{i}", "bench-password", "seller") for i in range(5)]
    slugs = []
    for j in range(n_products):
        owner = sellers[j % len(sellers)]
        topic = WORDS[j % len(WORDS)]
        slug = f"{topic}-{j}"
        market.create_product(owner, slug, f"{topic.title()} data set {j}")
        card = {
            "license": rng.choice(["CC-BY-4.0", "MIT", "proprietary"]),
            "task": rng.choice(["classification", "regression", "forecasting"]),
            "tags": [topic, rng.choice(["tabular", "text", "time-series"])],
            "description": f"Measurements about {topic} and {rng.choice(WORDS)} collected "
            f"in study {j}.",
        }
        market.add_version(owner, slug, io.BytesIO(_csv(50, j)), "data.csv", card)
        market.publish(owner, slug, 1)
        market.set_listing(owner, slug, rng.randrange(100, 20_000))
        slugs.append(slug)
    db.dispose()
    return slugs


def start_server(home: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["DATABAZAAR_HOME"] = str(home)
    env["DATABAZAAR_DATABASE_URL"] = url
    code = f"from databazaar.cli.market import serve; serve('127.0.0.1', {port}, log_level='error')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not start within 60 s")


async def run_load(
    base: str, paths: list[str], n_requests: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` workers share ``n_requests`` requests."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for i in range(warmup):
            (await client.get(paths[i % len(paths)])).raise_for_status()
        latencies: list[float] = []
        errors = 0
        counter = iter(range(n_requests))

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                t0 = time.perf_counter()
                r = await client.get(paths[i % len(paths)])
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests": n_requests,
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(n_requests / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def bench_backend(url: str | None, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Seed, serve and load one backend; return its settings and per-scenario results."""
    url = url or f"sqlite:///{home / 'databazaar.db'}"
    t0 = time.perf_counter()
    slugs = seed_market(url, home, args.products)
    seed_s = time.perf_counter() - t0
    port = _free_port()
    proc = start_server(home, url, port)
    rng = random.Random(1)
    scenarios = {
        "browse /api/catalog?limit=20": [
            f"/api/catalog?limit=20&offset={rng.randrange(0, args.products - 20)}"
            for _ in range(64)
        ],
        "full-text /api/catalog?q=...": [
            f"/api/catalog?q={rng.choice(WORDS)}+{rng.choice(WORDS)}&limit=20"
            if i % 2
            else f"/api/catalog?q={rng.choice(WORDS)}&limit=20"
            for i in range(64)
        ],
        "filtered /api/catalog?task=&max_price=": [
            f"/api/catalog?task={rng.choice(['classification', 'regression'])}"
            f"&max_price={rng.randrange(1000, 20000)}&limit=20"
            for _ in range(64)
        ],
        "product page /api/products/{slug}": [
            f"/api/products/{rng.choice(slugs)}" for _ in range(64)
        ],
    }
    results: dict[str, Any] = {}
    try:
        for name, paths in scenarios.items():
            for conc in args.concurrency:
                key = f"{name} @ {conc} clients"
                results[key] = asyncio.run(
                    run_load(f"http://127.0.0.1:{port}", paths, args.requests, conc,
                             args.warmup)
                )  # fmt: skip
                results[key]["concurrency"] = conc
                print(f"{key}: {results[key]}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"seed_seconds": round(seed_s, 2), "results": results}


def _postgres_schema_url(base: str) -> tuple[str, str]:
    """A fresh schema on ``base`` and a URL whose connections use it."""
    import uuid
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=' + name)}", name


def _drop_schema(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=200)
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per scenario")
    ap.add_argument(
        "--concurrency",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 16],
        help="comma-separated numbers of concurrent clients",
    )
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument(
        "--postgres-url",
        default=None,
        help="also benchmark PostgreSQL at this URL (a throw-away schema is used)",
    )
    args = ap.parse_args(argv)

    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dbz-bench-") as tmp:
        print("== sqlite", flush=True)
        backends["sqlite"] = bench_backend(None, Path(tmp) / "sqlite", args)
    if args.postgres_url:
        base = args.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
        url, schema = _postgres_schema_url(base)
        try:
            with tempfile.TemporaryDirectory(prefix="dbz-bench-") as tmp:
                print("== postgresql", flush=True)
                backends["postgresql"] = bench_backend(url, Path(tmp), args)
        finally:
            _drop_schema(base, schema)

    report = {
        "benchmark": "market API catalog reads over loopback",
        "server": "uvicorn, 1 worker process, 127.0.0.1",
        "products": args.products,
        "concurrency": args.concurrency,
        "requests_per_scenario": args.requests,
        "warmup_requests": args.warmup,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "backends": backends,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "market_api.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Market API: catalog read throughput and latency",
        "",
        f"{args.products} listed products; uvicorn (1 worker) on 127.0.0.1; "
        f"{' and '.join(map(str, args.concurrency))} concurrent keep-alive httpx clients "
        "in a closed loop, "
        f"{args.requests} measured requests per scenario after {args.warmup} warm-up "
        f"requests; {os.cpu_count()} CPUs shared with the load generator and other work "
        f"(load average {os.getloadavg()[0]:.1f} at the end); "
        f"Python {platform.python_version()}. Produced by `benchmarks/market_api.py`.",
        "",
        "| backend | scenario | clients | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, data in backends.items():
        for name, r in data["results"].items():
            scenario = name.rsplit(" @ ", 1)[0]
            lines.append(
                f"| {backend} | `{scenario}` | {r['concurrency']} | {r['throughput_rps']} | "
                f"{r['p50_ms']} | "
                f"{r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['errors']} |"
            )
    lines.append("")
    (RESULTS / "market_api.md").write_text("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
