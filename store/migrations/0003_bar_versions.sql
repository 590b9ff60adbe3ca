-- Per-day versions of every bar series, so readers can cache bars safely (both variants).
-- The bar sink bumps, in the same transaction as its write, the version of each
-- (symbol, interval, UTC day) it wrote (store/versions.py). A reader that reads the
-- versions of a range and later finds them unchanged knows no write to that range has
-- committed in between: the API's bar page cache (serving/page_cache.py) relies on it.
-- Anything else that changes bars must bump the same rows in its transaction (see
-- store/versions.py); the API also expires cached pages after a TTL.
CREATE TABLE bar_versions (
    symbol   text   NOT NULL,
    interval text   NOT NULL,
    day      date   NOT NULL,
    version  bigint NOT NULL,
    PRIMARY KEY (symbol, interval, day),
    CONSTRAINT bar_versions_positive CHECK (version > 0)
);

-- Bars stored before this migration get a first version.
INSERT INTO bar_versions (symbol, interval, day, version)
SELECT DISTINCT symbol, interval, (bucket_start AT TIME ZONE 'UTC')::date, 1 FROM bars;
