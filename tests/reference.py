"""An independent pandas computation of bars, used as the oracle in tests and benchmarks.

Written from the definitions (not from the pipeline's code): a trade is (source, symbol,
trade_id) and keeps its delivery with the smallest (ts_us, price, size); bucket by epoch-aligned
interval, open/close by (ts_us, trade_id, source) order, VWAP = sum(p*s)/sum(s) or the mean
price when volume is 0, within [low, high]. Every delivery is matched, however far apart.
"""
from __future__ import annotations

import pandas as pd

from alphastream.intervals import interval_micros


def pandas_bars(ticks: pd.DataFrame, intervals: tuple[str, ...]) -> pd.DataFrame:
    """Columns: symbol, interval, bucket_start_us, open, high, low, close, volume, vwap, trades."""
    kept = (ticks.sort_values(["ts_us", "price", "size"], kind="mergesort")
            .drop_duplicates(subset=["source", "symbol", "trade_id"], keep="first"))
    unique = kept.sort_values(["ts_us", "trade_id", "source"], kind="mergesort")
    frames = []
    for interval in intervals:
        width = interval_micros(interval)
        df = unique.assign(bucket_start_us=unique["ts_us"] // width * width, notional=unique["price"] * unique["size"])
        grouped = df.groupby(["symbol", "bucket_start_us"], sort=True)
        out = grouped.agg(
            open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
            volume=("size", "sum"), notional=("notional", "sum"), price_sum=("price", "sum"), trades=("price", "size"),
        ).reset_index()
        average = (out["notional"] / out["volume"]).where(out["volume"] > 0, out["price_sum"] / out["trades"])
        out["vwap"] = average.clip(out["low"], out["high"])
        out["interval"] = interval
        frames.append(out)
    columns = ["symbol", "interval", "bucket_start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]
    result = pd.concat(frames, ignore_index=True)[columns]
    return result.sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)


def bars_frame(bars) -> pd.DataFrame:
    """Bars (records) as a frame comparable with pandas_bars (timing and pane dropped)."""
    columns = ["symbol", "interval", "bucket_start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]
    df = pd.DataFrame([b._asdict() for b in bars], columns=list(bars[0]._fields) if bars else columns)[columns]
    return df.sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)


def assert_same_bars(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exact for keys, prices and counts; float sums (volume, vwap) to 1e-9 relative."""
    exact = ["symbol", "interval", "bucket_start_us", "open", "high", "low", "close", "trades"]
    assert len(actual) == len(expected), f"{len(actual)} bars, expected {len(expected)}"
    pd.testing.assert_frame_equal(actual[exact].reset_index(drop=True), expected[exact].reset_index(drop=True),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(actual[["volume", "vwap"]].reset_index(drop=True),
                                  expected[["volume", "vwap"]].reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9, atol=1e-9)


def pandas_filled_bars(bars: pd.DataFrame, max_gap_us: int, until_us: int | None = None,
                       in_session=lambda symbol, starts, width: [True] * len(starts)) -> pd.DataFrame:
    """``bars`` (as bars_frame gives them) plus a carry-forward row for every empty bucket after
    each series' first bar that starts within ``max_gap_us`` of the last traded bucket, before
    ``until_us`` and in session: a reindex and forward fill per (symbol, interval)."""
    frames = []
    for (symbol, interval), series in bars.groupby(["symbol", "interval"], sort=True):
        width = interval_micros(interval)
        first, last = series["bucket_start_us"].min(), series["bucket_start_us"].max()
        grid = pd.RangeIndex(first, last + max_gap_us + width, width, name="bucket_start_us")
        full = series.set_index("bucket_start_us").reindex(grid)
        traded_at = pd.Series(full.index.where(full["trades"].notna()), index=full.index).ffill()
        empty = full["trades"].isna()
        close = full["close"].ffill()
        keep = ~empty | ((full.index - traded_at) <= max_gap_us)
        if until_us is not None:
            keep &= ~empty | (full.index < until_us)
        keep &= ~empty | pd.Series(list(in_session(symbol, full.index.to_numpy(), width)), index=full.index)
        for column in ("open", "high", "low", "close", "vwap"):
            full[column] = full[column].where(~empty, close)
        full["volume"] = full["volume"].where(~empty, 0.0)
        full["trades"] = full["trades"].where(~empty, 0).astype(int)
        full["symbol"], full["interval"] = symbol, interval
        frames.append(full[keep].reset_index())
    columns = ["symbol", "interval", "bucket_start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]
    result = pd.concat(frames, ignore_index=True)[columns]
    return result.sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)
