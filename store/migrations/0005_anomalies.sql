-- Detections of transforms/anomalies.py (records.Anomaly), both variants: a few rows per symbol
-- and day, so a plain table (no partitions, no hypertable). The key makes the sink's writes
-- idempotent; a re-run that scores a detection differently updates it (updated_at says when).
CREATE TABLE anomalies (
    symbol       text             NOT NULL,
    interval     text             NOT NULL,
    bucket_start timestamptz      NOT NULL,
    kind         text             NOT NULL,
    score        double precision NOT NULL,
    threshold    double precision NOT NULL,
    details      text             NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, bucket_start, kind),
    -- The AnomalyKind values of alphastream/records.py.
    CONSTRAINT anomalies_kind CHECK (kind IN ('return_outlier', 'volume_spike', 'gap_jump', 'stale_price'))
);

-- /v1/anomalies without a symbol: newest first over every symbol.
CREATE INDEX anomalies_bucket_start ON anomalies (bucket_start DESC);
