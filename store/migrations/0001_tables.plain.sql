-- Bars, raw ticks and dead letters on plain PostgreSQL (this machine, Cloud SQL): declarative
-- RANGE partitioning by time. Monthly partitions are created ahead by
-- alphastream_ensure_partitions() (called by the migration runner on every run and by the sink
-- for the months it writes); a DEFAULT partition catches anything outside them, so no row is
-- ever refused. Columns follow alphastream/records.py (storage_columns: *_us -> timestamptz).

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
    -- The key doubles as the index for "one symbol, one interval, a time range", the API's
    -- query. It is the only index: every other one would slow each write (and lure the
    -- sink's key probes away from the key).
    PRIMARY KEY (symbol, interval, bucket_start),
    CONSTRAINT bars_low_le_high CHECK (low <= high),
    CONSTRAINT bars_volume_not_negative CHECK (volume >= 0),
    CONSTRAINT bars_pane_index_not_negative CHECK (pane_index >= 0)
) PARTITION BY RANGE (bucket_start);
-- Streaming rewrites each bar several times (early panes, on time, late): free space in each
-- page lets those be HOT updates (no new index entries). Set per partition: a partitioned table
-- itself has no storage.
CREATE TABLE bars_default PARTITION OF bars DEFAULT WITH (fillfactor = 80);

CREATE TABLE ticks (
    symbol   text             NOT NULL,
    ts       timestamptz      NOT NULL,
    price    double precision NOT NULL,
    size     double precision NOT NULL,
    trade_id text             NOT NULL,
    source   text             NOT NULL,
    -- (source, trade_id) identifies a trade; ts is in the key because a unique key on a
    -- partitioned table must contain the partition key. Replays are no-ops (ON CONFLICT DO NOTHING).
    CONSTRAINT ticks_trade UNIQUE (source, trade_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE ticks_default PARTITION OF ticks DEFAULT;
CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts);

-- Dead letters stay small: one plain table.
CREATE TABLE dead_letters (
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    raw         text        NOT NULL,
    origin      text        NOT NULL,
    seen_at     timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
-- A replay must not record the same dead letter twice (the sink inserts ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX dead_letters_identity ON dead_letters (seen_at, origin, reason, md5(raw));
CREATE INDEX dead_letters_reason_seen_at ON dead_letters (reason, seen_at DESC);

-- Create the monthly (UTC) partitions of `parent` covering [from_ts, to_ts). Rows already in
-- the DEFAULT partition for a new month are moved into it, so the partition can always be
-- attached. Returns the number of partitions created. Safe to call concurrently.
CREATE FUNCTION alphastream_ensure_partitions(parent regclass, from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    key_column text;
    default_partition text := parent::text || '_default';
    month_start timestamptz := date_trunc('month', from_ts, 'UTC');
    month_end timestamptz;
    partition_name text;
    -- See bars_default: bar partitions keep room for HOT updates; ticks are never updated.
    fillfactor integer := CASE WHEN parent = 'bars'::regclass THEN 80 ELSE 100 END;
    created integer := 0;
BEGIN
    SELECT a.attname INTO STRICT key_column
    FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent;
    -- Serialise partition creation: two sinks may ask for the same month at once.
    PERFORM pg_advisory_xact_lock(hashtext('alphastream_ensure_partitions'));
    WHILE month_start < to_ts LOOP
        month_end := (month_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
        partition_name := parent::text || '_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
        IF to_regclass(partition_name) IS NULL THEN
            -- Create standalone then ATTACH: that takes a weaker lock on the parent than
            -- CREATE TABLE ... PARTITION OF, so writers to other months are not blocked.
            EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
                           'WITH (fillfactor = %s)', partition_name, parent, fillfactor);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved',
                           default_partition, key_column, key_column, partition_name)
                USING month_start, month_end;
            EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, partition_name, month_start, month_end);
            created := created + 1;
        END IF;
        month_start := month_end;
    END LOOP;
    RETURN created;
END;
$$;
