"""The dashboard's only door to the data: a small client of the alphastream REST API.

Everything the dashboard knows about URLs, query parameters, response shapes and field names
of the API lives here, so a change in the API is a change in this one module. Responses are
returned as plain JSON-able values (lists of dicts with ISO-8601 UTC times), which is what
Dash stores in the browser; ``views.bars_frame`` turns bars into a DataFrame for the figures.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable

import requests

from alphastream.records import BAR_FIELDS, DEAD_LETTER_FIELDS, storage_columns
from alphastream.settings import API_KEY_HEADER

BAR_COLUMNS: tuple[str, ...] = storage_columns(BAR_FIELDS)  # symbol, interval, bucket_start, ...
DEAD_LETTER_COLUMNS: tuple[str, ...] = storage_columns(DEAD_LETTER_FIELDS)  # ..., seen_at

# Every list answer of the API is {"items": [...], "next_cursor": "..." | null}; the cursor goes
# back as the ``cursor`` query parameter.
ITEMS_KEY = "items"
NEXT_CURSOR_KEY = "next_cursor"
CURSOR_PARAM = "cursor"
# Safety stop for cursor pagination: a dashboard view never needs more rows than this.
MAX_ROWS = 20_000
PAGE_LIMIT = 5_000  # rows per request; the API accepts up to its ALPHASTREAM_API_MAX_LIMIT (10,000)


class ApiError(RuntimeError):
    """The API answered with an error, or an answer the dashboard cannot read."""

    def __init__(self, message: str, *, url: str, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class ApiUnavailable(ApiError):
    """The API could not be reached at all (not running, wrong URL, timeout)."""


@dataclass(frozen=True)
class SymbolInfo:
    """One symbol the store has bars for, as listed by ``GET /v1/symbols``."""

    symbol: str
    first_bar: str | None  # ISO-8601 UTC time of the symbol's oldest bar
    last_bar: str | None  # ISO-8601 UTC time of the symbol's newest bar (its bucket start)
    last_price: float | None


class ApiClient:
    """Typed access to the REST API. Thread-safe: one HTTP session per thread."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 5.0,
                 page_size: int = PAGE_LIMIT, id_token_audience: str | None = None):
        """``id_token_audience``: for an API behind Cloud Run's IAM check, the audience (the
        service URL) of the Google ID token sent with every request, from the runtime's
        service account (Application Default Credentials)."""
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.id_token_audience = id_token_audience
        self.timeout = timeout
        self.page_size = page_size
        self._local = threading.local()

    # -- transport -------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._id_token_session() if self.id_token_audience else requests.Session()
            if self.api_key:
                session.headers[API_KEY_HEADER] = self.api_key
            self._local.session = session
        return session

    def _id_token_session(self) -> requests.Session:
        """A session that sends ``Authorization: Bearer <ID token>`` and renews the token
        before it expires (google-auth's AuthorizedSession)."""
        import google.auth.exceptions
        from google.auth.transport.requests import AuthorizedSession, Request
        from google.oauth2 import id_token

        try:
            credentials = id_token.fetch_id_token_credentials(self.id_token_audience, request=Request())
        except google.auth.exceptions.DefaultCredentialsError as err:
            raise ApiUnavailable(
                f"cannot get an ID token for the private REST API {self.id_token_audience}: {err} "
                "(on Cloud Run the service account provides it; locally set GOOGLE_APPLICATION_CREDENTIALS "
                "to a service-account key, or unset the audience for a public API)", url=self.base_url,
            ) from err
        return AuthorizedSession(credentials)

    def _get(self, path: str, params: dict[str, Any] | None = None, *, text: bool = False) -> Any:
        url = f"{self.base_url}{path}"
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = self._session().get(url, params=clean, timeout=self.timeout)
        except requests.ConnectionError as err:
            raise ApiUnavailable(
                f"REST API unreachable at {self.base_url}: is it running? "
                f"(set ALPHASTREAM_API_URL or --api-url if it runs elsewhere) [{type(err).__name__}]",
                url=url,
            ) from err
        except requests.Timeout as err:
            raise ApiUnavailable(
                f"REST API at {self.base_url} did not answer {path} within {self.timeout:g} s", url=url
            ) from err
        if response.status_code >= 400:
            raise ApiError(
                f"REST API {path} answered HTTP {response.status_code}: {_error_detail(response)}",
                url=response.url, status=response.status_code,
            )
        if text:
            return response.text
        try:
            return response.json()
        except ValueError as err:
            raise ApiError(f"REST API {path} answered something that is not JSON", url=url) from err

    def _paged(self, path: str, params: dict[str, Any], *, max_rows: int = MAX_ROWS) -> list[dict]:
        """All rows of a cursor-paginated endpoint (or of a plain list answer)."""
        rows: list[dict] = []
        params = dict(params)
        while True:
            payload = self._get(path, params)
            items, cursor = _split_page(payload, path)
            rows.extend(items)
            if not cursor or not items or len(rows) >= max_rows:
                return rows[:max_rows]
            params[CURSOR_PARAM] = cursor

    # -- endpoints -------------------------------------------------------------------------

    def health(self) -> dict:
        """``GET /healthz``: the API process is up."""
        return self._get("/healthz")

    def ready(self) -> dict:
        """``GET /readyz``: the API can reach its database."""
        return self._get("/readyz")

    def symbols(self) -> list[SymbolInfo]:
        """``GET /v1/symbols``: every symbol with the range of its bars and its last price."""
        payload = self._get("/v1/symbols")
        items, _ = _split_page(payload, "/v1/symbols")
        return [_symbol_info(item) for item in items]

    def bars(self, symbol: str, interval: str, *, start: str | None = None, end: str | None = None,
             limit: int | None = None) -> list[dict]:
        """``GET /v1/bars``: bars of one symbol and interval in [start, end), oldest first."""
        params = {"symbol": symbol, "interval": interval, "start": start, "end": end,
                  "limit": min(limit or self.page_size, self.page_size)}
        rows = self._paged("/v1/bars", params, max_rows=limit or MAX_ROWS)
        bars = [_bar(row) for row in rows]
        bars.sort(key=lambda bar: bar["bucket_start"])
        return bars

    def latest_quotes(self, symbols: Iterable[str]) -> list[dict]:
        """``GET /v1/quotes/latest``: per symbol the newest bar's close (``price``), its
        ``bucket_start`` and ``updated_at``, and the UTC day's ``day_open``, ``day_volume`` and
        ``change_pct``."""
        names = ",".join(symbols)
        if not names:
            return []
        items, _ = _split_page(self._get("/v1/quotes/latest", {"symbols": names}), "/v1/quotes/latest")
        return items

    def indicator(self, symbol: str, interval: str, kind: str, *, window: int | None = None,
                  start: str | None = None, end: str | None = None) -> list[dict]:
        """``GET /v1/indicators``: one point per bar in [start, end), oldest first: ``bucket_start``,
        ``value`` (null while the window fills) and the kind's other components (macd: ``signal``,
        ``histogram``; bollinger: ``upper``, ``lower``)."""
        params = {"symbol": symbol, "interval": interval, "kind": kind, "window": window, "start": start,
                  "end": end, "limit": self.page_size}
        return self._paged("/v1/indicators", params)

    def risk(self, symbol: str, interval: str, *, start: str | None = None, end: str | None = None,
             benchmark: str | None = None) -> dict:
        """``GET /v1/risk``: volatility, max drawdown, VaR/ES at 95% and 99%, Sharpe (and beta and
        correlation against ``benchmark``) over the bars in [start, end)."""
        return self._get("/v1/risk", {"symbol": symbol, "interval": interval, "start": start, "end": end,
                                      "benchmark": benchmark})

    def anomalies(self, symbol: str, *, start: str | None = None, end: str | None = None) -> list[dict]:
        """``GET /v1/anomalies``: the detections on ``symbol``'s bars starting in [start, end),
        oldest first: ``bucket_start``, ``interval``, ``kind``, ``score``, ``threshold``, ``details``."""
        rows = self._paged("/v1/anomalies", {"symbol": symbol, "since": start, "until": end,
                                              "limit": self.page_size})
        return sorted(rows, key=lambda row: (row["bucket_start"], row["kind"]))

    def dead_letters(self, *, since: str | None = None, reason: str | None = None,
                     limit: int = MAX_ROWS) -> list[dict]:
        """``GET /v1/dead-letters``: rejected records (reason, detail, raw, origin, seen_at)."""
        return self._paged("/v1/dead-letters", {"since": since, "reason": reason,
                                                 "limit": min(limit, self.page_size)}, max_rows=limit)

    def alerts(self) -> list[dict]:
        """``GET /v1/alerts``: what is firing now (alert, severity, symbol, summary, runbook_url, ...)."""
        items, _ = _split_page(self._get("/v1/alerts"), "/v1/alerts")
        return items


# -- response shapes ---------------------------------------------------------------------------


def _split_page(payload: Any, path: str) -> tuple[list[dict], str | None]:
    """Rows and next cursor of a list answer: ``{"items": [...], "next_cursor": ...}``."""
    if isinstance(payload, dict) and isinstance(payload.get(ITEMS_KEY), list):
        return payload[ITEMS_KEY], payload.get(NEXT_CURSOR_KEY) or None
    shape = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
    raise ApiError(f"REST API {path}: expected {{{ITEMS_KEY!r}: [rows], {NEXT_CURSOR_KEY!r}: ...}}, "
                   f"got {shape}", url=path)


def _symbol_info(item: dict) -> SymbolInfo:
    price = item.get("last_price")
    return SymbolInfo(
        symbol=item["symbol"],
        first_bar=item.get("first_bar"),
        last_bar=item.get("last_bar"),
        last_price=float(price) if price is not None else None,
    )


def _bar(row: dict) -> dict:
    """A bar row with exactly the storage column names the dashboard uses (missing -> None)."""
    return {column: row.get(column) for column in BAR_COLUMNS}


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]
