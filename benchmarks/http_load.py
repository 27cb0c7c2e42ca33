"""A small closed-loop HTTP/1.1 load generator for 127.0.0.1 (run in its own process).

Reads a JSON spec on stdin::

    {"port": 8000, "concurrency": 8, "total": 2000, "warmup": 100,
     "requests": ["GET /api/catalog HTTP/1.1\\r\\nHost: ...\\r\\n\\r\\n", ...]}

``concurrency`` keep-alive connections share ``total`` measured requests (each sends
its next request when the previous answer has arrived), after ``warmup`` unmeasured
ones sent over ``max(concurrency, 8)`` connections (so that every server worker is
warm); request ``i`` is ``requests[i % len(requests)]``.  Writes one JSON object to
stdout: throughput, latency percentiles, status counts (and, with ``raw``, every
latency in milliseconds, sorted).  Only 127.0.0.1 is ever
contacted and every loop is bounded by ``total``.

It is plain asyncio on raw sockets (no HTTP client library), so one client process
keeps up with a few server processes on the same machine: parsing an answer is a
header split and a ``Content-Length`` read.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

WARMUP_CONNECTIONS = 8


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run(spec: dict) -> dict:
    port = int(spec["port"])
    requests = [r.encode("latin-1") for r in spec["requests"]]
    total, warmup, concurrency = int(spec["total"]), int(spec["warmup"]), int(spec["concurrency"])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    # Warm-up, unmeasured, on as many connections as the measurement uses and at least
    # WARMUP_CONNECTIONS: each server worker process accepts some of them, so every
    # worker has run the requests (compiled its statements, opened its database
    # connections) before the clock starts.  One warm-up connection reached one worker
    # only, and the first requests of the other then counted as measured (cold) ones.
    warm = iter(range(warmup))

    async def warm_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in warm:
                writer.write(requests[i % len(requests)])
                await _read_response(reader)
        finally:
            writer.close()

    if warmup:
        await asyncio.gather(*(warm_client() for _ in range(max(concurrency, WARMUP_CONNECTIONS))))
    counter = iter(range(warmup, warmup + total))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                t0 = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    raw = {"latencies_ms": [round(1000 * x, 3) for x in latencies]} if spec.get("raw") else {}
    return raw | {
        "requests": len(latencies),
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * latencies[-1], 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))
