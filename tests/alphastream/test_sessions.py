"""alphastream.sessions on real dates: a US holiday, the half-day after Thanksgiving, the 2024
DST change; crypto 24/7; overrides; and gap filling that stops at the session's close."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from alphastream.sessions import NO_SESSION, SessionMap, parse_exchange_map
from tests.fixtures.bars import bar
from transforms.gap_fill import FillPolicy, fill_series

MIN = 60_000_000


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


def is_open(symbol: str, when: str, hours: str = "regular", sessions: SessionMap | None = None) -> bool:
    sessions = sessions or SessionMap(hours=hours)
    return bool(sessions.open_mask(symbol, np.array([utc(when)]), MIN)[0])


def test_independence_day_is_closed_for_equities_and_open_for_crypto():
    assert not is_open("AAPL", "2024-07-04T15:00")
    assert is_open("AAPL", "2024-07-05T15:00")
    assert is_open("BTC-USD", "2024-07-04T15:00") and is_open("XBT/USD", "2024-07-04T03:00")


def test_the_day_after_thanksgiving_closes_at_13_new_york_time():
    assert is_open("AAPL", "2024-11-29T17:59")  # 12:59 EST
    assert not is_open("AAPL", "2024-11-29T18:00")
    assert is_open("AAPL", "2024-11-29T21:59", hours="extended")  # 16:59 EST: post-market until 17:00
    assert not is_open("AAPL", "2024-11-29T22:00", hours="extended")
    assert not is_open("AAPL", "2024-11-28T15:00")  # Thanksgiving


def test_the_open_moves_an_hour_in_utc_across_the_march_2024_dst_change():
    assert not is_open("AAPL", "2024-03-08T14:29") and is_open("AAPL", "2024-03-08T14:30")  # EST: 14:30 UTC
    assert not is_open("AAPL", "2024-03-10T15:00")  # Sunday, the change
    assert not is_open("AAPL", "2024-03-11T13:29") and is_open("AAPL", "2024-03-11T13:30")  # EDT: 13:30 UTC
    assert is_open("AAPL", "2024-03-11T08:00", hours="extended") and not is_open("AAPL", "2024-03-11T07:59",
                                                                                     hours="extended")


def test_an_hour_bucket_is_open_when_any_of_it_is_and_overrides_win():
    hour = 3_600_000_000
    mask = SessionMap().open_mask("AAPL", np.array([utc("2024-03-08T14:00"), utc("2024-03-08T21:00")]), hour)
    assert mask.tolist() == [True, False]  # 14:00-15:00 holds the 14:30 open; 21:00 is after the 16:00 EST close
    crypto_as_equity = SessionMap(overrides=parse_exchange_map("BTC-USD=XNYS, SPY=24/7"))
    assert not is_open("BTC-USD", "2024-07-04T15:00", sessions=crypto_as_equity)
    assert is_open("SPY", "2024-07-04T15:00", sessions=crypto_as_equity)


def test_bad_mappings_and_hours_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="SYMBOL=CALENDAR"):
        parse_exchange_map("AAPL")
    with pytest.raises(ValueError, match="unknown exchange calendar 'NOPE'"):
        parse_exchange_map("AAPL=NOPE")
    with pytest.raises(ValueError, match="regular, extended"):
        SessionMap(hours="overnight")


def test_fills_stop_at_the_half_day_close_and_resume_for_crypto():
    last = utc("2024-11-29T17:55")
    policy = FillPolicy(max_gap_seconds=3600, sessions=SessionMap())
    equity = fill_series([bar(last, 10.0)], policy)
    assert [f.bucket_start_us for f in equity] == [last + i * MIN for i in range(1, 5)]  # 17:56 .. 17:59
    crypto = fill_series([bar(last, 10.0, symbol="BTC-USD")], policy)
    assert len(crypto) == 60


def test_repair_cli_fills_only_in_session(tmp_path, capsys):
    from alphastream.records import Tick
    from alphastream.tick_archive import TickArchive
    from pipeline.repair import main

    archive = TickArchive(str(tmp_path), "ingest")
    archive.append([Tick("AAPL", utc("2024-11-29T17:55"), 10.0, 1.0, "a", "feed")])
    archive.close()
    args = ["--archive", str(tmp_path), "--start", "2024-11-29T17:00", "--end", "2024-11-29T19:00",
            "--intervals", "1m", "--fill_gaps", "--fill_gaps_max_seconds", "3600", "--dry_run"]
    assert main(args, now_us=lambda: utc("2024-12-01T00:00")) == 0
    assert "-> 5 final bars" in capsys.readouterr().out  # the trade's bar and 17:56 .. 17:59 (the half-day close)
    assert main([*args, "--exchange_map", "AAPL=24/7"], now_us=lambda: utc("2024-12-01T00:00")) == 0
    assert "-> 61 final bars" in capsys.readouterr().out


def bounds(symbol: str, when: str, hours: str = "regular") -> tuple[int, int]:
    opens, closes = SessionMap(hours=hours).session_bounds(symbol, np.array([utc(when)]))
    return int(opens[0]), int(closes[0])


def test_session_bounds_on_real_2026_dates():
    # The DST change (1 November 2026) moves the open from 13:30 to 14:30 UTC.
    assert bounds("AAPL", "2026-10-30T15:00") == (utc("2026-10-30T13:30"), utc("2026-10-30T20:00"))
    assert bounds("AAPL", "2026-11-02T15:00") == (utc("2026-11-02T14:30"), utc("2026-11-02T21:00"))
    # Thanksgiving has no session; the day after ends at 13:00 New York time (18:00 UTC).
    assert bounds("AAPL", "2026-11-26T15:00") == (NO_SESSION, NO_SESSION)
    assert bounds("AAPL", "2026-11-27T17:59") == (utc("2026-11-27T14:30"), utc("2026-11-27T18:00"))
    assert bounds("AAPL", "2026-11-27T18:00") == (NO_SESSION, NO_SESSION)  # the close is not in the session
    assert bounds("AAPL", "2026-11-02T14:29") == (NO_SESSION, NO_SESSION)
    # Extended hours run 04:00-20:00 New York time: past midnight UTC in winter.
    assert bounds("AAPL", "2026-11-03T00:59", "extended") == (utc("2026-11-02T09:00"), utc("2026-11-03T01:00"))
    # 24/7: the UTC day.
    assert bounds("BTC-USD", "2026-11-26T15:00") == (utc("2026-11-26T00:00"), utc("2026-11-27T00:00"))
    assert SessionMap().session_bounds("AAPL", np.array([], dtype=np.int64))[0].shape == (0,)
