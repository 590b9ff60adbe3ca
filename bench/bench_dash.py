"""Dashboard first-render benchmark: one day of 1-minute candles for one symbol, in headless Chromium.

    .venv/bin/python bench/bench_dash.py                 # 9 loads per cache mode, one trading session
    .venv/bin/python bench/bench_dash.py --loads 3       # a quick look

The real stack, as a user runs it: a private PostgreSQL filled by the pipeline
(``python -m pipeline``, one symbol, one synthetic session = 390 one-minute bars), the REST API
(uvicorn, its own process), the dashboard (Dash, served from this process) and Chromium. Each
load navigates to the dashboard and times, in the page, navigation start -> the first
candlestick boxes drawn in the SVG (``tests/fixtures/browser.py``'s draw probe); the number of
candles drawn is checked against the bars in the database.

Two cache modes, each the median of ``--loads`` loads:
  warm  the browser keeps its HTTP cache between loads (a returning user: scripts cached)
  cold  the cache is disabled (a first visit: ~4.8 MB of plotly.js and Dash scripts fetched)
Target: <= 1.5 s. A breakdown (scripts, Dash layout, chart callback answered, drawn) is printed too.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 1.5
DRAW_TIMEOUT_SECONDS = 30
SYMBOL = "AAPL"  # the synthetic market's first symbol
# Milestones of one load, read from the browser's own timings (ms since navigation start).
MILESTONES_JS = r"""
var res = performance.getEntriesByType('resource');
var nav = performance.getEntriesByType('navigation')[0];
function end(pred) {
  var r = res.filter(pred);
  return r.length ? Math.max.apply(null, r.map(function (e) { return e.responseEnd; })) : null;
}
function first(pred) { var r = res.filter(pred); return r.length ? r[0].responseEnd : null; }
return {scripts: nav.domContentLoadedEventEnd,
        layout: first(function (e) { return e.name.indexOf('_dash-layout') >= 0; }),
        plotly_js: end(function (e) { return /plotly[^/]*\.min\.js/.test(e.name); }),
        chart_answer: first(function (e) { return e.name.indexOf('_dash-update-component') >= 0; }),
        drawn: window.__candlesDrawnAt || null, candles: window.__candlesDrawn || 0};
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=9, help="Page loads per cache mode (median reported).")
    parser.add_argument("--ticks", type=int, default=20_000,
                        help="Synthetic trades in the session (enough for a bar every minute).")
    parser.add_argument("--json", action="store_true", help="Also print the results as one JSON line.")
    return parser.parse_args(argv)


def wait_for_candles(driver) -> dict:
    deadline = time.monotonic() + DRAW_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if driver.execute_script("return window.__candlesDrawnAt || null"):
            return driver.execute_script(MILESTONES_JS)
        time.sleep(0.02)
    raise RuntimeError(f"no candles drawn within {DRAW_TIMEOUT_SECONDS} s")


def measure(driver, url: str, loads: int, expected: int, cold: bool) -> list[dict]:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": cold})
    driver.get(url)  # one unmeasured load: the dashboard's own first request and Python warm-up
    wait_for_candles(driver)
    runs = []
    for _ in range(loads):
        driver.get("about:blank")
        driver.get(url)
        run = wait_for_candles(driver)
        if run["candles"] != expected:
            raise RuntimeError(f"drew {run['candles']} candles, the database has {expected} bars")
        runs.append(run)
    return runs


def summarise(name: str, runs: list[dict]) -> dict:
    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) / 1000.0 if values else None

    drawn = [r["drawn"] / 1000.0 for r in runs]
    summary = {"mode": name, "loads": len(runs), "median_s": statistics.median(drawn),
               "min_s": min(drawn), "max_s": max(drawn), "candles": runs[0]["candles"],
               **{f"{k}_s": median(k) for k in ("scripts", "plotly_js", "layout", "chart_answer")}}
    verdict = "meets" if summary["median_s"] <= TARGET_SECONDS else "MISSES"
    print(f"{name:>5}: first render median {summary['median_s']:.3f} s (min {summary['min_s']:.3f}, "
          f"max {summary['max_s']:.3f}, {len(runs)} loads, {summary['candles']} candles) "
          f"{verdict} the {TARGET_SECONDS} s target")
    steps = {"scripts": "scripts", "layout": "layout", "plotly_js": "plotly.js",
             "chart_answer": "chart callback answered"}
    marks = ", ".join(f"{label} {summary[f'{key}_s']:.3f}" for key, label in steps.items()
                      if summary[f"{key}_s"] is not None)
    print(f"       milestones (median, s since navigation): {marks}, candles drawn {summary['median_s']:.3f}")
    return summary


def main(argv: list[str] | None = None) -> int:
    import psycopg

    from dash_app.app import create_app
    from dash_app.settings import DashSettings
    from store import migrate
    from store.localdb import LocalDatabase
    from tests.fixtures.browser import fill_with_pipeline, install_draw_probe, serve_api, serve_wsgi, start_chromium

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the report
    work = Path(tempfile.mkdtemp(prefix="alphastream-bench-dash-"))
    work.chmod(0o755)  # when root, the postgres account must be able to enter it
    local = LocalDatabase(work / "pg", durable=False)
    driver = None
    try:
        local.ensure_running()
        db_url = local.url()
        migrate.migrate(db_url)
        started = time.perf_counter()
        day = fill_with_pipeline(db_url, work / "lake", symbols=1, ticks_per_symbol=args.ticks, bad_feed=False)
        with psycopg.connect(db_url) as conn:
            expected = conn.execute("SELECT count(*) FROM bars WHERE symbol = %s AND interval = '1m'",
                                    (SYMBOL,)).fetchone()[0]
        print(f"database: {expected} one-minute bars of {SYMBOL} on {day} "
              f"(pipeline run {time.perf_counter() - started:.1f} s)")
        with serve_api(db_url, log_path=work / "api.log") as api_url:
            # Live mode off during the measurement: only the first render is timed.
            app = create_app(DashSettings(api_url=api_url, dash_poll_seconds=3600))
            with serve_wsgi(app.server) as url:
                driver = start_chromium(str(work / "chromium"))
                install_draw_probe(driver)
                results = [summarise(mode, measure(driver, url, args.loads, expected, cold=mode == "cold"))
                           for mode in ("warm", "cold")]
        if args.json:
            print(json.dumps(results))
        return 0 if all(r["median_s"] <= TARGET_SECONDS for r in results) else 1
    finally:
        if driver is not None:
            driver.quit()
        local.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
