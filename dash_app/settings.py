"""Dashboard settings: the shared ALPHASTREAM_* variables plus the dashboard's own.

Environment variables (or ``.env``): ALPHASTREAM_API_URL, ALPHASTREAM_API_KEY,
ALPHASTREAM_DASH_HOST, ALPHASTREAM_DASH_PORT, ALPHASTREAM_DASH_POLL_SECONDS, ...
Command-line flags of ``python -m dash_app`` override them.
"""
from __future__ import annotations

from pydantic import Field

from alphastream.settings import AlphastreamSettings


class DashSettings(AlphastreamSettings):
    """Where the dashboard listens, which API it reads and how often it polls."""

    dash_host: str = Field(default="127.0.0.1", description="Interface the dashboard binds to.")
    dash_port: int = Field(default=8050, ge=1, le=65535, description="Port the dashboard listens on.")
    dash_api_audience: str | None = Field(
        default=None, description="Private API on Cloud Run: the audience (its URL) of the Google ID token "
                                  "sent with every request.")
    dash_poll_seconds: float = Field(
        default=2.0, gt=0, description="Live mode: how often the chart asks the API for new bars."
    )
    dash_health_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the watchlist and pipeline health refresh."
    )
    dash_stale_seconds: float = Field(
        default=120.0, gt=0,
        description="A symbol whose newest bar is older than this is marked stale in the watchlist.",
    )
    dash_api_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Timeout of one REST API request."
    )
    dash_watchlist_size: int = Field(
        default=20, ge=1, description="How many symbols the watchlist shows (the API's order)."
    )
