-- Bars, raw ticks and dead letters on TimescaleDB: hypertables chunked by time, compression
-- for old chunks, retention for raw ticks and dead letters. Same tables, columns and keys as
-- 0001_tables.plain.sql, so the API and the sink do not care which one is in use.
-- Chosen by the runner when the timescaledb extension is installed and preloaded.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE bars (
    symbol       text             NOT NULL,
    interval     text             NOT NULL,
    bucket_start timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    vwap         double precision NOT NULL,
    trades       bigint           NOT NULL,
    timing       text             NOT NULL,
    pane_index   integer          NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, bucket_start),
    CONSTRAINT bars_low_le_high CHECK (low <= high),
    CONSTRAINT bars_volume_not_negative CHECK (volume >= 0),
    CONSTRAINT bars_pane_index_not_negative CHECK (pane_index >= 0)
);
-- One-week chunks: a day of 1m/5m/1h bars for a few thousand symbols is a few million rows.
SELECT create_hypertable('bars', 'bucket_start', chunk_time_interval => interval '7 days');
-- Compressed chunks are segmented like the queries: one symbol and interval, ordered by time.
-- Chunks older than 30 days are past allowed lateness and replays; TimescaleDB >= 2.11 still
-- accepts INSERT ... ON CONFLICT into them if a backfill needs it.
ALTER TABLE bars SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol, interval',
    timescaledb.compress_orderby = 'bucket_start DESC'
);
SELECT add_compression_policy('bars', interval '30 days');

CREATE TABLE ticks (
    symbol   text             NOT NULL,
    ts       timestamptz      NOT NULL,
    price    double precision NOT NULL,
    size     double precision NOT NULL,
    trade_id text             NOT NULL,
    source   text             NOT NULL,
    CONSTRAINT ticks_trade UNIQUE (source, trade_id, ts)
);
SELECT create_hypertable('ticks', 'ts', chunk_time_interval => interval '1 day');
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts);
ALTER TABLE ticks SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('ticks', interval '7 days');
-- Raw ticks are the bulkiest and can be replayed from the lake or the feed archive.
SELECT add_retention_policy('ticks', interval '90 days');

CREATE TABLE dead_letters (
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    raw         text        NOT NULL,
    origin      text        NOT NULL,
    seen_at     timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('dead_letters', 'seen_at', chunk_time_interval => interval '30 days');
CREATE UNIQUE INDEX dead_letters_identity ON dead_letters (seen_at, origin, reason, md5(raw));
CREATE INDEX dead_letters_reason_seen_at ON dead_letters (reason, seen_at DESC);
SELECT add_retention_policy('dead_letters', interval '180 days');

-- Hypertables create their chunks as rows arrive: nothing to create ahead. Same signature as
-- the plain path's function, so the sink calls it without knowing which path is in use.
CREATE FUNCTION alphastream_ensure_partitions(parent regclass, from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;
