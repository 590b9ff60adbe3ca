"""Ingestion settings from the environment / .env: feed API keys.

    ALPHASTREAM_FINNHUB_API_KEY       Finnhub websocket (token query parameter)
    ALPHASTREAM_POLYGON_API_KEY       Polygon / Massive websocket (auth message)
    ALPHASTREAM_ALPHAVANTAGE_API_KEY  Alpha Vantage REST (apikey query parameter)

Keys are ``SecretStr``: they print as ``**********`` and are only unwrapped at the moment a
connector sends them. Nothing in ``ingestion`` logs a URL or message that carries a key.
"""
from __future__ import annotations

from pydantic import Field, SecretStr

from alphastream.settings import AlphastreamSettings


class MissingApiKey(RuntimeError):
    """A feed needs an API key that is not configured."""


class IngestionSettings(AlphastreamSettings):
    """AlphastreamSettings plus the market-data API keys."""

    finnhub_api_key: SecretStr | None = Field(default=None, description="Finnhub API key.")
    polygon_api_key: SecretStr | None = Field(default=None, description="Polygon.io / Massive API key.")
    alphavantage_api_key: SecretStr | None = Field(default=None, description="Alpha Vantage API key.")

    def require(self, name: str) -> str:
        """The secret value of ``<name>_api_key``, or MissingApiKey naming the variable to set."""
        secret: SecretStr | None = getattr(self, f"{name}_api_key")
        if secret is None or not secret.get_secret_value():
            raise MissingApiKey(
                f"--source {name} needs an API key: set ALPHASTREAM_{name.upper()}_API_KEY "
                "in the environment or in .env"
            )
        return secret.get_secret_value()
