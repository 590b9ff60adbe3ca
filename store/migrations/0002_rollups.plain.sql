-- Roll-ups on plain PostgreSQL: a view that computes 1-hour bars from 1-minute bars with
-- date_bin at query time (TimescaleDB keeps the same relation as a continuous aggregate).
-- VWAP recombines as the volume-weighted mean of the minute VWAPs; when an hour has no volume
-- it is the trade-weighted mean, matching the bar definition (mean price when volume is 0).
CREATE VIEW bars_1h_from_1m AS
SELECT
    symbol,
    date_bin(interval '1 hour', bucket_start, timestamptz '1970-01-01 00:00:00+00') AS bucket_start,
    (array_agg(open ORDER BY bucket_start))[1]       AS open,
    max(high)                                        AS high,
    min(low)                                         AS low,
    (array_agg(close ORDER BY bucket_start DESC))[1] AS close,
    sum(volume)                                      AS volume,
    coalesce(sum(vwap * volume) / nullif(sum(volume), 0), sum(vwap * trades) / sum(trades)) AS vwap,
    sum(trades)::bigint                              AS trades
FROM bars
WHERE interval = '1m'
GROUP BY 1, 2;
