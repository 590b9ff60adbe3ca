"""REST API benchmark: ``GET /v1/bars`` over one symbol's day of 1-minute bars.

    .venv/bin/python bench/bench_api.py                  # temporary PostgreSQL, 2,000 requests, 10 s of wrk
    .venv/bin/python bench/bench_api.py --db_url postgresql://...  --duration 5

The store holds one symbol, one UTC day of 1-minute bars (1,440), written by the project's
PostgreSQL sink. Three figures, in the same run and against the same database:

* the bare psycopg query (the API's own statement, typed rows) over the text and the binary
  protocol -- the binary one, which the API uses, is the floor the API is compared with;
* in-process latency of the endpoint (httpx over ASGI: routing, validation, the pool, the
  query and the response, without sockets), p50 / p99;
* requests/s over loopback: uvicorn (``--workers``) under ``wrk`` (``apt-get install wrk``),
  or a Python threaded client when wrk is missing (which then measures mostly itself).

Risk (``GET /v1/risk``, with a benchmark) is measured in the same run over a day of 1-minute bars
and a year of daily bars, against the bare query of its closes; target p99 <= 20 ms.

Three bar requests are measured: the whole day (1,440 bars, ~440 kB of JSON), the dashboard's
live poll (the last hour, 60 bars) and the day as a 15-minute roll-up. The store does not change
during the run, so repeated requests are served by the API's bar page cache (a fingerprint
lookup, then cached bytes: serving/page_cache.py); the whole day is measured once more with the
cache off (ALPHASTREAM_API_BARS_CACHE_MB=0), which is what a request after a write to its day
costs. Targets: p99 <= 5 ms, >= 2,000 req/s on 2 cores.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYMBOL = "BENCH"
MARKET = "MKT"  # the benchmark of the risk requests
DAY = dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)
MINUTES_PER_DAY = 1_440
DAYS_PER_YEAR = 365
TARGET_RISK_P99_MS = 20.0
WARMUP_REQUESTS = 100  # fills the pool, prepares statements (psycopg prepares after 5 runs)
P99 = 0.99
TARGET_P99_MS = 5.0
TARGET_RPS = 2_000.0
CEILING = "/healthz (no database)"
UNCACHED = "day, page cache off"
PROTOCOLS = ("text", "binary")  # of the bare query
SERVER_START_TIMEOUT_SECONDS = 30.0


def make_bars(symbol: str = SYMBOL, interval: str = "1m", count: int = MINUTES_PER_DAY, seed: int = 7) -> list:
    """A seeded random walk: ``count`` bars of ``interval`` from DAY (daily ones end at DAY)."""
    from alphastream.intervals import interval_seconds
    from alphastream.records import Bar, PaneTiming

    rng = random.Random(seed)
    step = dt.timedelta(seconds=interval_seconds(interval))
    first = DAY if interval == "1m" else DAY - step * count
    price, bars = 100.0, []
    for minute in range(count):
        start_us = int((first + step * minute).timestamp()) * 1_000_000
        prices = [price := price * math.exp(rng.gauss(0, 0.001)) for _ in range(5)]
        sizes = [rng.randint(1, 500) for _ in prices]
        volume = float(sum(sizes))
        bars.append(Bar(symbol, interval, start_us, prices[0], max(prices), min(prices), prices[-1], volume,
                        sum(p * s for p, s in zip(prices, sizes, strict=True)) / volume, len(prices),
                        PaneTiming.ON_TIME.value, 0))
    return bars


def fill(db_url: str) -> None:
    import apache_beam as beam

    from pipeline.postgres_sink import WriteBarsToPostgres
    from store import migrate

    migrate.migrate(db_url)
    with beam.Pipeline() as p:
        _ = p | beam.Create(make_bars() + make_bars(MARKET, seed=8) + make_bars(interval="1d", count=DAYS_PER_YEAR)
                            + make_bars(MARKET, "1d", DAYS_PER_YEAR, seed=8)) | WriteBarsToPostgres(db_url)
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE bars")
        count = conn.execute("SELECT count(*) FROM bars WHERE symbol = %s AND interval = '1m'",
                             (SYMBOL,)).fetchone()[0]
    assert count == MINUTES_PER_DAY, count


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples_s: list[float]) -> dict:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, P99), "n": len(ms)}


def bench_bare_query(db_url: str, start: dt.datetime, end: dt.datetime, n: int, interval: str = "1m",
                     statement=None) -> dict:
    """The API's own statement (``queries.bars_page``, or ``statement``) with psycopg and nothing
    else: typed rows, fetched, over the binary protocol (as the API reads them) and over the text
    protocol (psycopg's default). The binary figure is the floor the API is compared with."""
    import psycopg

    from serving.queries import bars_page

    statement = statement or bars_page(False)
    params = {"symbol": SYMBOL, "source": interval, "lo": start, "hi": end, "rows": MINUTES_PER_DAY + 1}
    results = {}
    with psycopg.connect(db_url, autocommit=True, options="-c TimeZone=UTC") as conn:
        for protocol in PROTOCOLS:
            samples = []
            for i in range(n + WARMUP_REQUESTS):
                t0 = time.perf_counter()
                rows = conn.execute(statement, params, binary=protocol == "binary").fetchall()
                if i >= WARMUP_REQUESTS:
                    samples.append(time.perf_counter() - t0)
            results[protocol] = {**summary(samples), "rows": len(rows)}
    return results


async def _in_process(db_url: str, paths: dict[str, str], n: int, cache_mb: float | None = None) -> dict:
    import httpx

    from serving.main import create_app
    from serving.settings import ApiSettings

    overrides = {} if cache_mb is None else {"api_bars_cache_mb": cache_mb}
    app = create_app(ApiSettings(_env_file=None, api_key=None, **overrides), dsn=db_url)
    results = {}
    async with app.router.lifespan_context(app):
        await app.state.pool.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, path in paths.items():
                samples = []
                for i in range(n + WARMUP_REQUESTS):
                    t0 = time.perf_counter()
                    response = await client.get(path)
                    elapsed = time.perf_counter() - t0
                    assert response.status_code == 200, response.text
                    if i >= WARMUP_REQUESTS:
                        samples.append(elapsed)
                body = response.json()
                results[name] = {**summary(samples), "bars": len(body["items"]) if "items" in body else body["bars"],
                                 "bytes": len(response.content)}
    return results


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"API did not answer {url}")


def _wrk(url: str, duration: float, connections: int, threads: int) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
            "errors": int(non_2xx.group(1)) if non_2xx else 0, "client": "wrk"}


def _python_load(url: str, duration: float, connections: int) -> dict:
    """Fallback load client: one keep-alive requests.Session per thread."""
    import threading

    import requests

    counts, stop = [0] * connections, time.monotonic() + duration

    def worker(i: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(url).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"rps": sum(counts) / duration, "p99_ms": None, "errors": 0, "client": "python"}


def bench_loopback(db_url: str, paths: dict[str, str], args: argparse.Namespace, cache_mb: float | None = None
                   ) -> dict:
    from alphastream.local_services import free_port

    port = free_port()
    env = {**os.environ, "ALPHASTREAM_DB_URL": db_url}
    if cache_mb is not None:
        env["ALPHASTREAM_API_BARS_CACHE_MB"] = str(cache_mb)
    env.pop("ALPHASTREAM_API_KEY", None)  # measure the endpoint, not the auth check
    server = subprocess.Popen([sys.executable, "-m", "serving", "--port", str(port), "--workers", str(args.workers),
                               "--log-level", "warning"], cwd=ROOT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/readyz")
        results = {}
        for name, path in paths.items():
            if shutil.which("wrk"):
                _wrk(base + path, 1, args.connections, args.wrk_threads)  # warm every worker's pool
                results[name] = _wrk(base + path, args.duration, args.connections, args.wrk_threads)
            else:
                results[name] = _python_load(base + path, args.duration, args.connections)
        return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def queries() -> tuple[dict[str, str], dict[str, str]]:
    """The measured requests: (bar queries, risk queries), each by name."""
    end = DAY + dt.timedelta(days=1)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    day_q = f"symbol={SYMBOL}&interval=1m&start={DAY:{stamp}}&end={end:{stamp}}&limit={MINUTES_PER_DAY}"
    hour_q = f"symbol={SYMBOL}&interval=1m&start={end - dt.timedelta(hours=1):{stamp}}&end={end:{stamp}}"
    paths = {"day (1440 bars)": f"/v1/bars?{day_q}", "last hour (60 bars)": f"/v1/bars?{hour_q}",
             "day as 15m roll-up (96 bars)": f"/v1/bars?{day_q.replace('interval=1m', 'interval=15m')}"}
    year_start = DAY - dt.timedelta(days=DAYS_PER_YEAR)
    risk_paths = {
        "day of 1m, vs benchmark": f"/v1/risk?{day_q.split('&limit')[0]}&benchmark={MARKET}",
        "year of 1d, vs benchmark": f"/v1/risk?symbol={SYMBOL}&interval=1d&start={year_start:{stamp}}"
                                    f"&end={DAY:{stamp}}&benchmark={MARKET}",
    }
    return paths, risk_paths


def measure(db_url: str, args: argparse.Namespace, paths: dict[str, str], risk_paths: dict[str, str]
            ) -> tuple[dict, dict, dict]:
    """(bare queries, API in-process, API on loopback), each by request name; ``paths`` gains the
    uncached variant of the day's query."""
    from serving.queries import closes

    end = DAY + dt.timedelta(days=1)
    year_start = DAY - dt.timedelta(days=DAYS_PER_YEAR)
    bare = {"day (1440 bars)": bench_bare_query(db_url, DAY, end, args.requests),
            "last hour (60 bars)": bench_bare_query(db_url, end - dt.timedelta(hours=1), end, args.requests),
            "day of 1m, vs benchmark": bench_bare_query(db_url, DAY, end, args.requests, statement=closes(False)),
            "year of 1d, vs benchmark": bench_bare_query(db_url, year_start, DAY, args.requests, "1d",
                                                         statement=closes(False))}
    in_process = asyncio.run(_in_process(db_url, {**paths, **risk_paths}, args.requests))
    # /healthz touches no database: the ceiling of this machine's HTTP stack right now.
    loopback = bench_loopback(db_url, {**paths, **risk_paths, CEILING: "/healthz"}, args)
    uncached = {UNCACHED: paths["day (1440 bars)"]}
    in_process.update(asyncio.run(_in_process(db_url, uncached, args.requests, cache_mb=0)))
    loopback.update(bench_loopback(db_url, uncached, args, cache_mb=0))
    paths.update(uncached)
    bare[UNCACHED] = bare["day (1440 bars)"]
    return bare, in_process, loopback


def report(args: argparse.Namespace, load_before: float, paths: dict[str, str], risk_paths: dict[str, str],
           bare: dict, in_process: dict, loopback: dict) -> None:
    print(f"\nGET /v1/bars, one symbol, one day of 1-minute bars ({os.cpu_count()} cores; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after: other work on the machine skews every figure)")
    print(f"{'request':<30} {'bare text p50/p99 ms':>21} {'bare binary p50/p99 ms':>23} "
          f"{'API in-process p50/p99 ms':>26} {'loopback req/s':>15} {'wrk p99 ms':>11}")
    for name in paths:
        bare_text = [f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f}" if b else "-"
                     for b in (bare.get(name, {}).get(protocol) for protocol in PROTOCOLS)]
        i, lb = in_process[name], loopback[name]
        wrk_p99 = f"{lb['p99_ms']:.1f}" if lb["p99_ms"] is not None else "-"
        print(f"{name:<30} {bare_text[0]:>21} {bare_text[1]:>23} {i['p50_ms']:>12.2f} / {i['p99_ms']:<11.2f} "
              f"{lb['rps']:>15,.0f} {wrk_p99:>11}")
    print(f"{CEILING:<30} {'-':>21} {'-':>23} {'-':>26} {loopback[CEILING]['rps']:>15,.0f} "
          f"{loopback[CEILING]['p99_ms'] or 0:>11.1f}")
    print(f"\nloopback: {args.workers} uvicorn workers, {args.connections} connections, {args.duration:g} s, "
          f"client {next(iter(loopback.values()))['client']}; errors: {sum(lb['errors'] for lb in loopback.values())}")
    print("\nGET /v1/risk (one bare query is the symbol's closes; the API reads the benchmark's too)")
    print(f"{'request':<30} {'bare binary p50/p99 ms':>23} {'API in-process p50/p99 ms':>26} {'loopback req/s':>15}")
    for name in risk_paths:
        b, i = bare[name]["binary"], in_process[name]
        print(f"{name:<30} {b['p50_ms']:>10.2f} / {b['p99_ms']:<10.2f} {i['p50_ms']:>12.2f} / {i['p99_ms']:<11.2f} "
              f"{loopback[name]['rps']:>15,.0f}   ({i['bars']} bars)")
    print(f"targets: p99 <= {TARGET_P99_MS:g} ms in-process, >= {TARGET_RPS:,.0f} req/s on loopback; "
          f"risk p99 <= {TARGET_RISK_P99_MS:g} ms")
    for name in risk_paths:
        print(f"  {name:<30} p99 {'OK' if in_process[name]['p99_ms'] <= TARGET_RISK_P99_MS else 'MISS'}")
    for name in paths:
        p99_ok = in_process[name]["p99_ms"] <= TARGET_P99_MS
        rps_ok = loopback[name]["rps"] >= TARGET_RPS
        print(f"  {name:<30} p99 {'OK' if p99_ok else 'MISS'}, req/s {'OK' if rps_ok else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db_url", help="Benchmark this database (its bars for symbol BENCH are replaced). "
                                         "Default: a temporary local PostgreSQL.")
    parser.add_argument("--requests", type=int, default=2_000, help="In-process requests per measurement.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of load per loopback measurement.")
    parser.add_argument("--connections", type=int, default=16, help="Concurrent loopback connections.")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes.")
    parser.add_argument("--wrk_threads", type=int, default=1, help="wrk threads (it shares the 2 cores).")
    args = parser.parse_args()

    from store.localdb import LocalDatabase

    load_before = os.getloadavg()[0]
    home, local = None, None
    db_url = args.db_url
    if db_url is None:
        home = Path(tempfile.mkdtemp(prefix="alphastream-bench-api-"))
        home.chmod(0o755)
        local = LocalDatabase(home, durable=False)
        db_url = local.ensure_running()
    paths, risk_paths = queries()
    try:
        fill(db_url)
        bare, in_process, loopback = measure(db_url, args, paths, risk_paths)
    finally:
        if local is not None:
            local.stop()
            shutil.rmtree(home, ignore_errors=True)
    report(args, load_before, paths, risk_paths, bare, in_process, loopback)


if __name__ == "__main__":
    main()
