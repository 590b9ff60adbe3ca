"""No dead letter is lost, end to end against a real PostgreSQL: a NUL inside a string (which
PostgreSQL text refuses) still reaches the lake as it was and the table spelled ``\\u0000``; a
tick the database refuses becomes a ``sink_failed`` dead letter in the lake; a dead letter the
table itself refuses reaches the lake through its own write; the summary's accounting counts
every one of them."""
from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pyarrow.dataset as ds

from pipeline.__main__ import main
from pipeline.summary import RunSummary

TS = 1_704_205_805_000_000  # 2024-01-02 14:30:05 UTC
DAY = "2024-01-02"


def tick(trade_id: str, **changes) -> dict:
    return {"symbol": "AAPL", "ts_us": TS, "price": 100.0, "size": 1.0, "trade_id": trade_id, "source": "x",
            **changes}


def run(tmp_path: Path, db_url: str, lines: list[str], capsys, *extra: str) -> tuple[int, str, Path]:
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lake = tmp_path / "lake"
    code = main(["--source", "files", "--input", str(tmp_path / "in.jsonl"), "--db_url", db_url,
                 "--output", str(lake), "--intervals", "1m", "--max_future_seconds", str(10**10), *extra])
    return code, capsys.readouterr().out, lake


def lake_dead_letters(lake: Path) -> list[dict]:
    return ds.dataset(str(lake / "dead_letters"), format="parquet", partitioning="hive").to_table().to_pylist()


def table_dead_letters(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT reason, raw, origin FROM dead_letters ORDER BY reason, origin").fetchall()


def test_nul_in_a_payload_lands_in_the_lake_and_the_table(db_url, tmp_path, capsys):
    nul_line = json.dumps(tick("t2")).replace('"t2"', '"t\x002"')  # a raw NUL: not valid JSON
    lines = [json.dumps(tick("t1")), nul_line, json.dumps(tick("t\x003"))]  # t\u00003: a valid tick
    code, out, lake = run(tmp_path, db_url, lines, capsys, "--write_ticks")
    assert code == 0, out

    letters = lake_dead_letters(lake)
    assert {r["reason"] for r in letters} == {"bad_json", "sink_failed"}
    assert [r["raw"] for r in letters if r["reason"] == "bad_json"] == [nul_line]  # byte for byte
    refused_tick = [json.loads(r["raw"]) for r in letters if r["reason"] == "sink_failed"]
    assert [(t["trade_id"], t["ts_us"]) for t in refused_tick] == [("t\x003", TS)]
    assert [r["origin"] for r in letters if r["reason"] == "sink_failed"] == ["postgres:ticks"]
    assert all(r["seen_at"].date().isoformat() == DAY for r in letters if r["reason"] == "sink_failed")

    sink_raw = next(r["raw"] for r in letters if r["reason"] == "sink_failed")  # JSON: NUL escaped already
    assert [(reason, raw) for reason, raw, _ in table_dead_letters(db_url)] == [
        ("bad_json", nul_line.replace("\x00", "\\u0000")), ("sink_failed", sink_raw)]
    assert "dead letters      1 ticks + 1 sink_failed: OK, all in the lake" in out
    assert "(1 bar rows upserted, 2 dead letters, 1 rows failed)" in out


def test_a_dead_letter_the_table_refuses_reaches_the_lake(db_url, tmp_path, capsys):
    with psycopg.connect(db_url) as conn:  # a table that refuses a reason: the sink's row errors
        conn.execute("ALTER TABLE dead_letters ADD CONSTRAINT no_bad_price CHECK (reason <> 'bad_price')")
    lines = [json.dumps(tick("t1")), json.dumps(tick("t2", price=-1.0))]
    code, out, lake = run(tmp_path, db_url, lines, capsys)
    assert code == 0, out

    letters = {r["reason"]: r for r in lake_dead_letters(lake)}
    assert set(letters) == {"bad_price", "sink_failed"}
    unstored = letters["sink_failed"]
    assert unstored["origin"] == "postgres:dead_letters" and "no_bad_price" in unstored["detail"]
    assert json.loads(unstored["raw"])["raw"] == letters["bad_price"]["raw"]  # the refused letter, whole
    assert unstored["seen_at"] == letters["bad_price"]["seen_at"]  # dated as the letter it carries
    assert table_dead_letters(db_url) == []
    assert "dead letters      1 ticks + 1 sink_failed: OK, all in the lake" in out


def test_a_dead_letter_missing_from_the_lake_fails_the_accounting():
    counters = {"ticks_read": 3, "ticks_unique": 2, "ticks_dead_lettered": 1, "db_rows_dead_lettered": 1}
    missing = RunSummary({**counters, "lake_deadletter_rows": 1})  # the sink failure never landed
    assert missing.ticks_accounted and not missing.accounted
    assert "dead letters      1 ticks + 1 sink_failed: MISMATCH: the lake holds 1" in missing.lines("lake", None)
    assert RunSummary({**counters, "lake_deadletter_rows": 2}).accounted
