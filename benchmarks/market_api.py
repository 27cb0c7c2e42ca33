"""Market API throughput and latency against bare anchors, in one run, over loopback.

What it measures
----------------
* **Reads** (catalog browse, full-text search, filtered list, product page), on SQLite
  and on PostgreSQL, at 1 and 8 concurrent clients, each next to a **read anchor**: a
  bare FastAPI app with one trivial route (``market_anchors.read_anchor``) under the same
  uvicorn, the same number of workers and the same logging (uvicorn's access log, as
  ``databazaar serve`` has by default).  Ratio = our req/s / the anchor's req/s at the
  same concurrency, the anchor measured right before each of our cells (both servers
  stay up for the whole block, so a change of the machine's load between cells hits
  the anchor and our endpoint alike instead of one anchor cell at the start standing for
  the whole block).  The requests carry no
  ``If-None-Match``: every answer is a full 200.  The public catalog answers come from
  the server's validated cache (``databazaar.server.cache``); a separate *uncached*
  scenario (every URL distinct, so every request runs the query) shows the cost behind
  it and is reported beside, not folded into the ratio.
* **Purchases** on PostgreSQL at 32 clients: ``--purchases`` (10,000) ``POST
  /api/orders`` requests, each a first purchase of one product by one of 50 funded
  buyers (bearer tokens), next to a **write anchor**: FastAPI + SQLAlchemy with one
  route running one transaction that updates one balance
  (``market_anchors.write_anchor``), same workers and logging, the same number of
  requests over as many accounts.  Afterwards the invariants are checked on the store:
  ledger sum 0, no negative balance, one order per idempotency key, every request
  answered 201, ``ledger verify`` OK.  The purchases run in ``--purchase-blocks`` (5)
  blocks, each right after a block of the anchor with both servers up, so a change of
  the machine's load during the run hits both alike; each side's figures pool its
  blocks (requests over summed wall time, percentiles over all latencies).

How the machine is shared
-------------------------
Servers run in their own processes (``--workers`` uvicorn workers, default 2); the load
comes from one separate process (``http_load.py``: asyncio on raw sockets, closed loop,
bounded by a request count) that only contacts 127.0.0.1.  On a 2-core machine the
client and the server workers share both cores, for ours and for the anchors alike; the
load average is recorded before and after.  Run it under the shared lock:
``flock /tmp/databazaar-heavy.lock python benchmarks/market_api.py``.

Results go to ``benchmarks/results/market_api.{json,md}`` with the summary keys
``read_ratio_vs_anchor_min`` (over endpoints, stores and 1/8 clients),
``read_p99_ms_8_clients_max``, ``purchase_ratio_vs_anchor``, ``purchase_p99_ms`` and
``load_average``, and whether each target of issue 13 is met.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WORDS = [
    "weather", "sensor", "traffic", "retail", "clinical", "speech", "satellite", "finance",
    "energy", "genomics", "reviews", "images", "fraud", "soil", "ocean", "transit",
]  # fmt: skip
TARGETS = {"read_ratio": 0.5, "read_p99_ms": 50.0, "purchase_ratio": 0.5, "purchase_p99_ms": 300.0}


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _csv(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{i % 2}" for i, r in
                                enumerate(x)]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _market(url: str, home: Path) -> Any:
    from argon2 import PasswordHasher

    from databazaar.market.db import Database, upgrade
    from databazaar.market.service import Market

    db = Database.from_url(url)
    upgrade(db.engine)
    return Market(db, home, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024))


def seed_products(url: str, home: Path, n_products: int) -> list[str]:
    """Create 5 sellers and ``n_products`` listed products; return their slugs."""
    market = _market(url, home)
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
    market.close()
    return slugs


def seed_buyers(url: str, home: Path, n_buyers: int, funds: int) -> list[tuple[int, str]]:
    """Create and fund ``n_buyers`` buyers; return ``(account id, bearer token)`` pairs."""
    market = _market(url, home)
    out = []
    for i in range(n_buyers):
        buyer = market.create_account(f"buyer-{i}", "bench-password", "buyer")
        market.deposit(buyer.id, funds)
        out.append((buyer.id, market.issue_token(buyer.id, name="bench").token))
    market.close()
    return out


@contextmanager
def server(code: str, env: dict[str, str], port: int, probe: str) -> Iterator[None]:
    """Run ``python -c code`` (a uvicorn server) until the block ends; wait for ``probe``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,  # the access log is written (and formatted) all the same
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited during start-up: {code}")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 120 s")
            time.sleep(0.2)
        yield
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


def ours(env: dict[str, str], port: int, args: argparse.Namespace) -> Any:
    code = (
        "from databazaar.server.app import serve; "
        f"serve('127.0.0.1', {port}, workers={args.workers}, log_level={args.log_level!r}, "
        "access_log=True)"
    )
    return server(code, env, port, "/api/health")


def anchor(factory: str, env: dict[str, str], port: int, args: argparse.Namespace) -> Any:
    code = (  # the same uvicorn set-up as `databazaar serve` (server.app.run_uvicorn)
        f"import sys; sys.path.insert(0, {str(HERE)!r}); "
        "from databazaar.server.app import run_uvicorn; "
        f"run_uvicorn('market_anchors:{factory}', host='127.0.0.1', port={port}, "
        f"workers={args.workers}, log_level={args.log_level!r}, access_log=True)"
    )
    return server(code, env, port, "/anchor" if factory == "read_anchor" else "/docs")


def get(port: int, path: str, headers: dict[str, str] | None = None) -> str:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"


def post(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    data = json.dumps(body, separators=(",", ":"))
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n{data}"
    )


def load(
    port: int, requests: list[str], concurrency: int, total: int, warmup: int, raw: bool = False
) -> dict:
    """Run the load generator in its own process and return its summary (with ``raw``,
    also every latency, sorted, as ``latencies_ms``)."""
    spec = {"port": port, "concurrency": concurrency, "total": total, "warmup": warmup,
            "requests": requests, "raw": raw}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(HERE / "http_load.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,  # a lock convoy must not hold the shared machine for long
    )
    result = json.loads(done.stdout)
    result["load_1min"] = round(os.getloadavg()[0], 2)
    return result


def read_scenarios(port: int, slugs: list[str], n_products: int) -> dict[str, list[str]]:
    rng = random.Random(1)
    return {
        "browse /api/catalog?limit=20": [
            get(port, f"/api/catalog?limit=20&offset={rng.randrange(0, n_products - 20)}")
            for _ in range(64)
        ],
        "full-text /api/catalog?q=...": [
            get(port, f"/api/catalog?q={rng.choice(WORDS)}+{rng.choice(WORDS)}&limit=20")
            if i % 2
            else get(port, f"/api/catalog?q={rng.choice(WORDS)}&limit=20")
            for i in range(64)
        ],
        "filtered /api/catalog?task=&max_price=": [
            get(
                port,
                f"/api/catalog?task={rng.choice(['classification', 'regression'])}"
                f"&max_price={rng.randrange(1000, 20000)}&limit=20",
            )
            for _ in range(64)
        ],
        "product page /api/products/{slug}": [
            get(port, f"/api/products/{rng.choice(slugs)}") for _ in range(64)
        ],
    }


def uncached_scenario(port: int, n: int, cell: str) -> list[str]:
    """Every URL distinct (a nonce in the query, unique to the ``cell``), so every
    request runs the query."""
    return [
        get(port, f"/api/catalog?limit=20&q=data&offset={i % 50}&n={cell}-{i}") for i in range(n)
    ]


def bench_reads(name: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    slugs = seed_products(url, home, args.products)
    seed_s = time.perf_counter() - t0
    if args.no_reads:
        return {"seed_seconds": round(seed_s, 2), "cells": {}, "slugs": slugs}
    env = dict(os.environ, DATABAZAAR_HOME=str(home), DATABAZAAR_DATABASE_URL=url)
    env.pop("DATABASE_URL", None)
    cells: dict[str, Any] = {}

    def cell(
        key: str, ports: tuple[int, int], requests: list[str], conc: int, total: int = 0
    ) -> None:
        """Our cell, right after the anchor's cell at the same concurrency."""
        total = total or (args.read_requests if conc > 1 else args.read_requests // 2)
        base = load(ports[0], [get(ports[0], "/anchor")], conc, total, args.warmup)
        cells[key] = load(ports[1], requests, conc, total, args.warmup) | {"anchor": base}
        print(f"[{name}] {key}: {cells[key]}", flush=True)

    ports = _free_ports(2)
    with anchor("read_anchor", env, ports[0], args), ours(env, ports[1], args):
        for scenario, requests in read_scenarios(ports[1], slugs, args.products).items():
            for conc in args.read_clients:
                cell(f"{scenario} @ {conc}", ports, requests, conc)
        for conc in args.read_clients:
            n = args.warmup + args.uncached_requests
            cell(f"uncached /api/catalog?q=data&n=<unique> @ {conc}", ports,
                 uncached_scenario(ports[1], n, f"c{conc}"), conc,
                 args.uncached_requests)  # fmt: skip
    return {"seed_seconds": round(seed_s, 2), "cells": cells, "slugs": slugs}


def bench_purchases(url: str, home: Path, slugs: list[str], args: argparse.Namespace) -> dict:
    """10,000 first purchases at 32 clients on PostgreSQL next to the write anchor."""
    from market_anchors import seed_write_anchor

    n_buyers = -(-args.purchases // len(slugs))
    buyers = seed_buyers(url, home, n_buyers, funds=10**9)
    pairs = [(b, s) for b in range(n_buyers) for s in slugs][: args.purchases]
    random.Random(2).shuffle(pairs)
    env = dict(os.environ, DATABAZAAR_HOME=str(home), DATABAZAAR_DATABASE_URL=url,
               ANCHOR_DATABASE_URL=url)  # fmt: skip
    env.pop("DATABASE_URL", None)
    out: dict[str, Any] = {"buyers": n_buyers}

    seed_write_anchor(url, n_buyers, 10**9)
    ports = _free_ports(2)
    keys = [f"bench-{uuid.uuid4().hex}" for _ in pairs]
    anchor_reqs = [post(ports[0], "/pay", {"account": b, "amount": 100}, {}) for b, _ in pairs]
    our_reqs = [
        post(
            ports[1],
            "/api/orders",
            {"products": [s], "idempotency_key": k},
            {"Authorization": f"Bearer {buyers[b][1]}"},
        )
        for (b, s), k in zip(pairs, keys, strict=True)
    ]
    # Interleaved blocks (anchor block, then ours, both servers up throughout), so a
    # change of the machine's load during the run hits both sides alike; the summary
    # of each side pools its blocks (requests over summed wall time, percentiles over
    # all latencies).
    blocks = max(1, args.purchase_blocks)
    bounds = [len(pairs) * i // blocks for i in range(blocks + 1)]
    runs: dict[str, list[dict]] = {"anchor": [], "ours": []}
    with anchor("write_anchor", env, ports[0], args), ours(env, ports[1], args):
        for lo, hi in itertools.pairwise(bounds):
            for side, reqs, port in (("anchor", anchor_reqs, ports[0]),
                                     ("ours", our_reqs, ports[1])):  # fmt: skip
                part = load(port, reqs[lo:hi], args.purchase_clients, hi - lo, 0, raw=True)
                runs[side].append(part)
                brief = {k: v for k, v in part.items() if k != "latencies_ms"}
                print(f"[postgresql] {side} block {len(runs[side])}/{blocks}: {brief}", flush=True)
    for side in ("anchor", "ours"):
        out[side] = _pooled(runs[side])
        out[side + "_blocks"] = [
            {k: v for k, v in r.items() if k != "latencies_ms"} for r in runs[side]
        ]
    out["invariants"] = check_invariants(url, home, [b for b, _ in buyers], keys)
    print(f"[postgresql] invariants: {out['invariants']}", flush=True)
    return out


def _pooled(parts: list[dict]) -> dict:
    """One summary of several load runs: requests over summed wall time, percentiles
    over all their latencies, statuses added up."""
    lat = sorted(x for p in parts for x in p["latencies_ms"])
    wall = sum(p["wall_s"] for p in parts)
    statuses: dict[str, int] = {}
    for p in parts:
        for code, n in p["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)

    return {
        "requests": len(lat),
        "concurrency": parts[0]["concurrency"],
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(lat) / wall, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1], 2),
        "statuses": statuses,
        "load_1min": [p["load_1min"] for p in parts],
        "blocks": len(parts),
    }


def check_invariants(url: str, home: Path, buyer_ids: list[int], keys: list[str]) -> dict:
    from sqlalchemy import func, select

    from databazaar.market.models import Account, Order, Role

    market = _market(url, home)
    with market.db.read() as s:
        n_orders = s.scalar(
            select(func.count()).select_from(Order).where(Order.idempotency_key.in_(keys))
        )
        per_key = s.execute(
            select(func.count())
            .select_from(Order)
            .group_by(Order.buyer_id, Order.idempotency_key)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar()
        negative = s.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.role != Role.system, Account.balance_minor < 0)
        )
    report = market.ledger_report()
    market.close()
    return {
        "orders_for_the_keys": n_orders,
        "max_orders_per_key": per_key,
        "negative_balances": negative,
        "ledger_sum": report.total_minor,
        "ledger_rows": report.n_rows,
        "ledger_chains": report.n_chains,
        "verify_ok": report.ok,
        "verify_problems": [str(p) for p in report.problems[:5]],
    }


def _postgres_schema_url(base: str) -> tuple[str, str]:
    """A fresh schema on ``base`` and a URL whose connections use it."""
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


def summarise(backends: dict[str, Any], purchases: dict[str, Any] | None) -> dict[str, Any]:
    ratios, uncached, p99s = {}, {}, {}
    for backend, data in backends.items():
        cells = data["cells"]
        for key, cell in cells.items():
            scenario, conc = key.rsplit(" @ ", 1)
            ratio = round(cell["throughput_rps"] / cell["anchor"]["throughput_rps"], 3)
            target = uncached if scenario.startswith("uncached") else ratios
            target[f"{backend} | {scenario} | {conc}"] = ratio
            if int(conc) == 8 and not scenario.startswith("uncached"):
                p99s[f"{backend} | {scenario}"] = cell["p99_ms"]
    out: dict[str, Any] = {
        "read_ratio_vs_anchor_min": min(ratios.values()) if ratios else None,
        "read_ratio_vs_anchor": ratios,
        "read_ratio_vs_anchor_uncached": uncached,
        "read_p99_ms_8_clients_max": max(p99s.values()) if p99s else None,
    }
    if purchases:
        out["purchase_ratio_vs_anchor"] = round(
            purchases["ours"]["throughput_rps"] / purchases["anchor"]["throughput_rps"], 3
        )
        out["purchase_p99_ms"] = purchases["ours"]["p99_ms"]
        out["write_anchor_p99_ms"] = purchases["anchor"]["p99_ms"]
    inv = purchases["invariants"] if purchases else None
    out["targets_met"] = {
        "read_ratio_ge_0.5": out["read_ratio_vs_anchor_min"] is not None
        and out["read_ratio_vs_anchor_min"] >= TARGETS["read_ratio"],
        "read_p99_8_clients_le_50ms": out["read_p99_ms_8_clients_max"] is not None
        and out["read_p99_ms_8_clients_max"] <= TARGETS["read_p99_ms"],
        "purchase_ratio_ge_0.5": bool(purchases)
        and out["purchase_ratio_vs_anchor"] >= TARGETS["purchase_ratio"],
        "purchase_p99_le_300ms": bool(purchases)
        and out["purchase_p99_ms"] <= TARGETS["purchase_p99_ms"],
        "invariants_hold": bool(inv)
        and inv["verify_ok"]
        and inv["ledger_sum"] == 0
        and inv["negative_balances"] == 0
        and inv["max_orders_per_key"] == 1
        and inv["orders_for_the_keys"] == purchases["ours"]["requests"]
        and purchases["ours"]["statuses"] == {"201": purchases["ours"]["requests"]},
    }
    return out


def write_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    cfg = report["config"]
    m = report["machine"]
    lines = [
        "# Market API against bare anchors (one run)",
        "",
        f"{cfg['products']} listed products; uvicorn with {cfg['workers']} worker processes on "
        f"127.0.0.1, log level {cfg['log_level']} with the access log on (ours and anchors "
        "alike); one separate load process (asyncio, raw keep-alive HTTP/1.1, closed loop); "
        f"{m['cpus']} CPUs shared by servers and client; load average "
        f"{m['load_average_start']} before, {m['load_average_end']} after (1/5/15 min); "
        f"Python {m['python']}. Produced by `benchmarks/market_api.py` under "
        "`flock /tmp/databazaar-heavy.lock`.",
        "",
        "## Summary",
        "",
        "| key | value | target | met |",
        "|---|---:|---:|---|",
        f"| `read_ratio_vs_anchor_min` | {s['read_ratio_vs_anchor_min']} | >= 0.5 | "
        f"{s['targets_met']['read_ratio_ge_0.5']} |",
        f"| `read_p99_ms_8_clients_max` | {s['read_p99_ms_8_clients_max']} | <= 50 | "
        f"{s['targets_met']['read_p99_8_clients_le_50ms']} |",
    ]
    if "purchase_ratio_vs_anchor" in s:
        lines += [
            f"| `purchase_ratio_vs_anchor` | {s['purchase_ratio_vs_anchor']} | >= 0.5 | "
            f"{s['targets_met']['purchase_ratio_ge_0.5']} |",
            f"| `purchase_p99_ms` | {s['purchase_p99_ms']} | <= 300 | "
            f"{s['targets_met']['purchase_p99_le_300ms']} |",
            f"| invariants after {cfg['purchases']} purchases | "
            f"{report['purchases']['invariants']['verify_ok']} | verify OK, sum 0, ... | "
            f"{s['targets_met']['invariants_hold']} |",
        ]
    lines += [
        "",
        "## Reads",
        "",
        "Each row: the anchor (`GET /anchor` on the bare app) measured right before our "
        "endpoint at the same concurrency; the ratio divides the two.",
        "",
        "| store | scenario | clients | req/s | anchor req/s | ratio vs anchor | p50 ms | "
        "p99 ms | max ms | anchor p99 ms | statuses | load 1 min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    ratios = {**s["read_ratio_vs_anchor"], **s["read_ratio_vs_anchor_uncached"]}
    for backend, data in report["backends"].items():
        for key, r in data["cells"].items():
            scenario, conc = key.rsplit(" @ ", 1)
            ratio = ratios[f"{backend} | {scenario} | {conc}"]
            a = r["anchor"]
            lines.append(
                f"| {backend} | `{scenario}` | {conc} | {r['throughput_rps']} | "
                f"{a['throughput_rps']} | {ratio} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['max_ms']} | {a['p99_ms']} | {r['statuses']} | {r['load_1min']} |"
            )
    if report.get("purchases"):
        p = report["purchases"]
        lines += [
            "",
            f"## Purchases (PostgreSQL, {cfg['purchase_clients']} clients, "
            f"{cfg['purchases']} requests, {p['buyers']} buyers)",
            "",
            "| server | req/s | p50 ms | p99 ms | max ms | statuses |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, key in (("write anchor (one balance UPDATE)", "anchor"),
                          ("POST /api/orders", "ours")):  # fmt: skip
            r = p[key]
            lines.append(
                f"| {name} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['max_ms']} | {r['statuses']} |"
            )
        if p.get("ours_blocks"):
            lines += [
                "",
                "Blocks, in the order run (each anchor block right before ours):",
                "",
                "| block | anchor req/s | ours req/s | ratio | anchor p99 ms | ours p99 ms | "
                "load 1 min (anchor, ours) |",
                "|---:|---:|---:|---:|---:|---:|---|",
            ]
            for i, (a, o) in enumerate(zip(p["anchor_blocks"], p["ours_blocks"], strict=True)):
                lines.append(
                    f"| {i + 1} | {a['throughput_rps']} | {o['throughput_rps']} | "
                    f"{round(o['throughput_rps'] / a['throughput_rps'], 3)} | {a['p99_ms']} | "
                    f"{o['p99_ms']} | {a['load_1min']}, {o['load_1min']} |"
                )
        lines += ["", f"Invariants after the run: `{json.dumps(p['invariants'])}`"]
    lines.append("")
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=200)
    ap.add_argument(
        "--read-requests",
        type=int,
        default=4000,
        help="measured requests per read cell at 8 clients (half at 1 client)",
    )
    ap.add_argument("--read-clients", type=lambda t: [int(x) for x in t.split(",")], default=[1, 8])
    ap.add_argument(
        "--uncached-requests",
        type=int,
        default=500,
        help="measured requests per uncached cell (not part of any target; each runs a query)",
    )
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--purchases", type=int, default=10_000)
    ap.add_argument("--purchase-clients", type=int, default=32)
    ap.add_argument(
        "--purchase-blocks",
        type=int,
        default=5,
        help="purchases are measured in this many blocks, each right after an anchor block",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--no-postgres", action="store_true", help="SQLite reads only")
    ap.add_argument(
        "--no-reads", action="store_true", help="purchases only (products seeded, reads skipped)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)  # fmt: skip
    sys.path.insert(0, str(HERE))

    load_start = [round(x, 2) for x in os.getloadavg()]
    backends: dict[str, Any] = {}
    purchases = None
    with tempfile.TemporaryDirectory(prefix="dbz-bench-") as tmp:
        home = Path(tmp) / "sqlite"
        if not args.no_reads:
            url = f"sqlite:///{home / 'db.sqlite'}"
            backends["sqlite"] = bench_reads("sqlite", url, home, args)
    if not args.no_postgres:
        base = args.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
        url, schema = _postgres_schema_url(base)
        try:
            with tempfile.TemporaryDirectory(prefix="dbz-bench-") as tmp:
                backends["postgresql"] = bench_reads("postgresql", url, Path(tmp), args)
                if args.purchases:
                    slugs = backends["postgresql"]["slugs"]
                    purchases = bench_purchases(url, Path(tmp), slugs, args)
        finally:
            _drop_schema(base, schema)
    for data in backends.values():
        data.pop("slugs")
    report = {
        "benchmark": "market API vs bare FastAPI anchors over loopback",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        | {"postgres_url": "(local)"},
        "code_commit": os.environ.get("BENCH_COMMIT") or _git_commit(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "backends": backends,
        "purchases": purchases,
    }
    report["summary"] = summarise(backends, purchases)
    report["summary"]["load_average"] = report["machine"]["load_average_end"]
    report = {**report["summary"], **report}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "market_api.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "market_api.md").write_text(write_markdown(report))
    print(json.dumps(report["summary"], indent=2))
    return report


if __name__ == "__main__":
    main()
