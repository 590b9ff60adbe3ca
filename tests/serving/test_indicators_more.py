"""``GET /v1/indicators`` RSI, MACD, Bollinger bands and ATR on real PostgreSQL, against plain
Python references written from the definitions (loops, no pandas ``ewm``), paged so that each
page's warm-up comes from the bars before it."""
from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.analytics import MINUTE_SYMBOL
from tests.fixtures.api import api_frame

PAGE = 97  # small pages: most start far from the series' first bar
NONE = float("nan")


def exponential(values: list[float], alpha: float) -> list[float]:
    """Recursive average seeded with the first value: a_0 = x_0, a_i = alpha x_i + (1 - alpha) a_(i-1)."""
    out, average = [], values[0]
    for value in values:
        average = alpha * value + (1 - alpha) * average
        out.append(average)
    return out


def hidden(values: list[float], count: int) -> list[float]:
    return [NONE] * count + values[count:]


def reference_rsi(close: list[float], window: int) -> list[float]:
    changes = [b - a for a, b in zip(close, close[1:], strict=False)]
    gains = exponential([max(c, 0.0) for c in changes], 1 / window)
    losses = exponential([max(-c, 0.0) for c in changes], 1 / window)
    rsi = [100 - 100 / (1 + gain / loss) if loss > 0 else (100.0 if gain > 0 else 50.0)
           for gain, loss in zip(gains, losses, strict=True)]
    return hidden([NONE] + rsi, window)


def reference_macd(close: list[float]) -> dict[str, list[float]]:
    line = [f - s for f, s in zip(exponential(close, 2 / 13), exponential(close, 2 / 27), strict=True)]
    signal = exponential(line, 2 / 10)
    return {"value": hidden(line, 25), "signal": hidden(signal, 33),
            "histogram": hidden([a - b for a, b in zip(line, signal, strict=True)], 33)}


def reference_bollinger(close: list[float], window: int) -> dict[str, list[float]]:
    out = {"value": [], "upper": [], "lower": []}
    for i in range(len(close)):
        if i < window - 1:
            for values in out.values():
                values.append(NONE)
            continue
        chunk = close[i - window + 1:i + 1]
        mean, deviation = statistics.fmean(chunk), statistics.pstdev(chunk)
        out["value"].append(mean)
        out["upper"].append(mean + 2 * deviation)
        out["lower"].append(mean - 2 * deviation)
    return out


def reference_atr(high: list[float], low: list[float], close: list[float], window: int) -> list[float]:
    # Each bar after the first against the previous close.
    true_range = [high[0] - low[0]] + [max(hi - lo, abs(hi - c), abs(lo - c))
                                       for hi, lo, c in zip(high[1:], low[1:], close, strict=False)]
    return hidden(exponential(true_range, 1 / window), window - 1)


def all_bars(client, interval: str) -> dict[str, list]:
    items, cursor = [], None
    while True:
        page = client.get("/v1/bars", params={"symbol": MINUTE_SYMBOL, "interval": interval,
                                              **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            frame = api_frame(items)
            return {column: frame[column].tolist() for column in ("bucket_start", "high", "low", "close")}


def all_indicator_items(client, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        response = client.get("/v1/indicators", params={"symbol": MINUTE_SYMBOL, "limit": PAGE, **params,
                                                        **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items


def column(items: list[dict], name: str) -> np.ndarray:
    return np.array([NONE if item[name] is None else item[name] for item in items])


@pytest.mark.parametrize("interval", ["1m", "5m"])  # stored, and rolled up in SQL
@pytest.mark.parametrize("kind,window", [("rsi", 14), ("rsi", 5), ("macd", None), ("bollinger", 20),
                                         ("bollinger", 7), ("atr", 14), ("atr", 30)])
def test_indicator_matches_the_reference(analytics_client, kind, window, interval):
    bars = all_bars(analytics_client, interval)
    reference = {
        "rsi": lambda: {"value": reference_rsi(bars["close"], window)},
        "macd": lambda: reference_macd(bars["close"]),
        "bollinger": lambda: reference_bollinger(bars["close"], window),
        "atr": lambda: {"value": reference_atr(bars["high"], bars["low"], bars["close"], window)},
    }[kind]()
    items = all_indicator_items(analytics_client, interval=interval, kind=kind,
                                **({"window": window} if window else {}))
    assert [pd.Timestamp(item["bucket_start"]) for item in items] == bars["bucket_start"]
    for name, expected in reference.items():
        # A page's seed is 19 (Wilder) or 10 (EMA) windows back, not at the first bar: its weight
        # is below 1e-8, times a price difference of a few units.
        np.testing.assert_allclose(column(items, name), np.array(expected), rtol=1e-7, atol=1e-6,
                                   equal_nan=True, err_msg=f"{kind} {name}")
        assert np.isfinite(column(items, name)).sum() > len(items) // 2
    assert set(items[-1]) == {"bucket_start", *reference}  # only the kind's own components


def test_rsi_stays_in_range_and_reads_the_climb(analytics_client):
    items = all_indicator_items(analytics_client, interval="1m", kind="rsi")
    values = column(items, "value")
    finite = values[np.isfinite(values)]
    assert finite.min() >= 0 and finite.max() <= 100
    assert values[629] > 95  # thirty rising bars in a row
    assert values[439] == pytest.approx(values[400], rel=1e-9)  # flat: both averages decay alike


def test_a_page_starting_mid_series_is_warm(analytics_client):
    start = all_bars(analytics_client, "1m")["bucket_start"][700].isoformat()
    page = analytics_client.get("/v1/indicators", params={"symbol": MINUTE_SYMBOL, "interval": "1m",
                                                          "kind": "atr", "start": start, "limit": 5}).json()
    assert page["window"] == 14 and all(item["value"] is not None for item in page["items"])


def test_refusals_and_documented_definitions(analytics_client):
    base = {"symbol": MINUTE_SYMBOL, "interval": "1m"}
    macd_window = analytics_client.get("/v1/indicators", params={**base, "kind": "macd", "window": 10})
    assert macd_window.status_code == 422 and "omit window" in macd_window.json()["detail"]
    assert analytics_client.get("/v1/indicators", params={**base, "kind": "stochastic"}).status_code == 422
    schema = analytics_client.get("/openapi.json").json()
    parameters = schema["paths"]["/v1/indicators"]["get"]["parameters"]
    kind = next(p for p in parameters if p["name"] == "kind")
    for phrase in ("alpha = 1 / window", "12/26/9", "2 population standard deviations", "true range"):
        assert phrase in kind["description"]
    enum = kind["schema"]
    if "$ref" in enum:
        enum = schema["components"]["schemas"][enum["$ref"].rsplit("/", 1)[1]]
    assert set(enum["enum"]) >= {"rsi", "macd", "bollinger", "atr"}
