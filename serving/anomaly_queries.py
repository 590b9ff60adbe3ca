"""SQL of ``/v1/anomalies``, parameterised only; columns from ``alphastream.records.Anomaly``.

Kept beside ``serving.queries`` (which holds the bar, indicator and dead-letter SQL) in the same
style: identifiers composed with ``psycopg.sql``, every client value a bound parameter.
"""
from __future__ import annotations

from psycopg import sql

from alphastream.records import ANOMALY_FIELDS, storage_columns
from serving.queries import UPDATED_AT

ANOMALIES_TABLE = "anomalies"
ANOMALY_COLUMNS: tuple[str, ...] = storage_columns(ANOMALY_FIELDS)
ANOMALY_ROW_COLUMNS: tuple[str, ...] = ANOMALY_COLUMNS + (UPDATED_AT,)
DETAILS = "details"
# The cursor position: the table's key, newest first.
KEY_COLUMNS = ("bucket_start", "symbol", "interval", "kind")

_a = {name: sql.Identifier(name) for name in ANOMALY_ROW_COLUMNS}  # KeyError if the record changes
# details is stored as JSON text (records.Anomaly); served as an object.
_served = sql.SQL(", ").join(
    sql.SQL("{}::jsonb").format(_a[n]) if n == DETAILS else _a[n] for n in ANOMALY_ROW_COLUMNS)

# Each row's key (the cursor position: bucket_start in epoch us), then its columns.
ANOMALIES_PAGE = sql.SQL("""
SELECT (extract(epoch FROM {bucket_start}) * 1000000)::bigint, {symbol}, {interval}, {kind}, {served}
FROM {table}
WHERE (%(symbol)s::text IS NULL OR {symbol} = %(symbol)s)
  AND (%(kind)s::text IS NULL OR {kind} = %(kind)s)
  AND (%(since)s::timestamptz IS NULL OR {bucket_start} >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR {bucket_start} < %(until)s)
  AND (%(after_bucket_start)s::timestamptz IS NULL
       OR ({bucket_start}, {symbol}, {interval}, {kind})
          < (%(after_bucket_start)s, %(after_symbol)s, %(after_interval)s, %(after_kind)s))
ORDER BY {bucket_start} DESC, {symbol} DESC, {interval} DESC, {kind} DESC
LIMIT %(rows)s""").format(served=_served, table=sql.Identifier(ANOMALIES_TABLE), **_a)
