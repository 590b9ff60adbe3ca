"""API settings: the shared ALPHASTREAM_* variables plus the API's own.

Environment variables (or ``.env``): ALPHASTREAM_DB_URL (the DSN the pipeline writes to),
ALPHASTREAM_API_KEY (enables X-API-Key auth), ALPHASTREAM_API_HOST, ALPHASTREAM_API_PORT,
ALPHASTREAM_API_CORS_ORIGINS, ALPHASTREAM_API_POOL_MAX_SIZE, ALPHASTREAM_API_MAX_LIMIT,
ALPHASTREAM_API_EXCHANGE_MAP (the pipeline's --exchange_map, for ``/v1/bars?session=``), ...
Command-line flags of ``python -m serving`` override host, port and workers.
"""
from __future__ import annotations

from pydantic import Field, field_validator

from alphastream.sessions import SessionMap, parse_exchange_map
from alphastream.settings import AlphastreamSettings


class ApiSettings(AlphastreamSettings):
    """Where the API listens, how it pools connections and how much one request may ask for."""

    api_host: str = Field(default="127.0.0.1", description="Interface uvicorn binds to.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port uvicorn listens on.")
    api_workers: int = Field(default=1, ge=1, description="uvicorn worker processes.")
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, e.g. ["http://127.0.0.1:8050"]; empty: CORS off.',
    )
    api_pool_min_size: int = Field(default=1, ge=0, description="Connections kept open.")
    api_pool_max_size: int = Field(default=8, ge=1, description="Most connections at once.")
    api_pool_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long a request waits for a free connection."
    )
    api_statement_timeout_ms: int = Field(
        default=5_000, ge=1, description="PostgreSQL statement_timeout of the API's connections."
    )
    api_default_limit: int = Field(default=1_000, ge=1, description="Rows per page when no limit is given.")
    api_max_limit: int = Field(default=10_000, ge=1, description="Largest accepted limit (rows per page).")
    api_max_range_days: float = Field(
        default=3_660.0, gt=0, description="Largest accepted end - start of a bars or indicators query."
    )
    api_max_scan_rows: int = Field(
        default=2_000_000, ge=1,
        description="Most stored bars one roll-up page may read; larger pages are shortened.",
    )
    api_max_symbols: int = Field(default=100, ge=1, description="Most symbols in one quotes or stream request.")
    api_max_window: int = Field(default=1_000, ge=1, description="Largest indicator window (bars).")
    api_catalog_ttl_seconds: float = Field(
        default=5.0, ge=0, description="How long the list of stored (symbol, interval) pairs is cached."
    )
    api_bars_cache_mb: float = Field(
        default=64.0, ge=0,
        description="Memory for cached /v1/bars pages per worker (served while the stored days they cover "
        "are unchanged, see serving/page_cache.py); 0 turns the cache off.",
    )
    api_bars_cache_ttl_seconds: float = Field(
        default=60.0, ge=0,
        description="Longest a cached /v1/bars page is served: bounds staleness after writes that bypass "
        "the bar versions (the pipeline's sink never does).",
    )
    api_exchange_map: str = Field(
        default="",
        description="Trading calendars per symbol for /v1/bars?session=, in the pipeline's --exchange_map "
        "form: SYMBOL=CALENDAR comma-separated (exchange_calendars names, e.g. 'SHEL=XLON,ETH-USD=24/7'). "
        "Default: pairs such as BTC-USD trade 24/7, other symbols on XNYS. Give the API the pipeline's map.",
    )
    api_stream_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the bar stream polls bars.updated_at."
    )
    api_stream_max_seconds: float = Field(
        default=3_600.0, gt=0, description="Longest a bar stream stays open (clients reconnect)."
    )
    api_stream_late_horizon_seconds: float = Field(
        default=86_400.0, gt=0,
        description="The stream pushes updates of bars starting at most this long before a "
        "symbol's newest bar when it opened (bounds each poll to recent bars).",
    )
    api_stream_max_events: int = Field(
        default=100_000, ge=1, description="Most events one bar stream sends before closing."
    )
    # /v1/alerts: the store's view of the Prometheus rules SymbolDataStale and DeadLetterRate
    # (deploy/prometheus/alerts.yml); the defaults are the rules' thresholds.
    api_alert_stale_seconds: float = Field(
        default=300.0, gt=0,
        description="A symbol is stale (SymbolDataStale) when the end of its newest bar (shortest stored "
        "interval) is more than this many seconds ago.",
    )
    api_alert_dead_letter_rate: float = Field(
        default=1.0, ge=0,
        description="Dead letters per second (recorded over the window below) above which DeadLetterRate fires.",
    )
    api_alert_dead_letter_window_seconds: float = Field(
        default=300.0, gt=0, description="The window the dead-letter rate is measured over (seconds)."
    )

    @field_validator("api_exchange_map")
    @classmethod
    def _known_calendars(cls, value: str) -> str:
        parse_exchange_map(value)  # a malformed pair or unknown calendar fails at start-up, named
        return value

    def sessions(self, hours: str) -> SessionMap:
        """Each symbol's trading sessions of ``hours`` (regular or extended)."""
        return SessionMap(parse_exchange_map(self.api_exchange_map), hours)
