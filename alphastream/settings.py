"""Settings read from the environment (and a .env file): the one place that reads os.environ.

Every component reads the same variable names, so one ``.env`` configures the pipeline, the
API and the dashboard alike:

    ALPHASTREAM_DB_URL   PostgreSQL DSN (pipeline sink, migrations, API)
    ALPHASTREAM_API_URL  base URL of the REST API (dashboard)
    ALPHASTREAM_API_KEY  if set, the API requires it in the X-API-Key header
    ALPHASTREAM_HOME     project-local state folder (embedded database, default lake)
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ALPHASTREAM_"
# The header carrying the API key (a bearer token works too); the API checks it, the dashboard sends it.
API_KEY_HEADER = "X-API-Key"


class AlphastreamSettings(BaseSettings):
    """Settings shared by every component. Subclass to add a component's own."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    db_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN, e.g. postgresql://user:pass@host:5432/db. "
        "Unset: the embedded local database is used.",
    )
    home: Path = Field(
        default=Path(".alphastream"),
        description="Folder for local state: the embedded PostgreSQL cluster and its logs.",
    )
    api_url: str = Field(default="http://127.0.0.1:8000", description="REST API base URL.")
    api_key: str | None = Field(default=None, description="API key; unset disables auth.")


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, safe for logs and summaries."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
        return dsn
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", dsn)
