-- migrate: no-transaction
-- Continuous aggregates cannot be created inside a transaction block, so the runner executes
-- this file one statement at a time (statements end with ";" at the end of a line).
-- 1-hour bars from 1-minute bars, refreshed incrementally; same relation name and columns as
-- the plain path's date_bin view (0002_rollups.plain.sql).
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h_from_1m
WITH (timescaledb.continuous) AS
SELECT
    symbol,
    time_bucket(interval '1 hour', bucket_start) AS bucket_start,
    first(open, bucket_start)                    AS open,
    max(high)                                    AS high,
    min(low)                                     AS low,
    last(close, bucket_start)                    AS close,
    sum(volume)                                  AS volume,
    coalesce(sum(vwap * volume) / nullif(sum(volume), 0), sum(vwap * trades) / sum(trades)) AS vwap,
    sum(trades)::bigint                          AS trades
FROM bars
WHERE interval = '1m'
GROUP BY symbol, time_bucket(interval '1 hour', bucket_start)
WITH NO DATA;
-- Refresh the last 3 days every 15 minutes (late bars within allowed lateness are included),
-- leaving the current, still-filling hour to the real-time part of the aggregate.
SELECT add_continuous_aggregate_policy('bars_1h_from_1m',
    start_offset => interval '3 days',
    end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes',
    if_not_exists => true);
