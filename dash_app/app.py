"""Builds the Dash app: one API client, the page layout and the callbacks."""
from __future__ import annotations

from functools import partial

from dash import Dash

from dash_app.api_client import ApiClient
from dash_app.callbacks import Clock, register_callbacks, utc_now
from dash_app.figures import warm_up
from dash_app.layout import build_layout
from dash_app.settings import DashSettings

TITLE = "alphastream · market dashboard"


def create_app(settings: DashSettings | None = None, clock: Clock = utc_now) -> Dash:
    """The dashboard reading the REST API at ``settings.api_url``."""
    settings = settings or DashSettings()
    client = ApiClient(settings.api_url, api_key=settings.api_key,
                       timeout=settings.dash_api_timeout_seconds, id_token_audience=settings.dash_api_audience)
    app = Dash(__name__, title=TITLE, update_title=None,
               meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}])
    # A function, not a value: each page load asks the API for the current symbol list.
    app.layout = partial(build_layout, client, settings)
    register_callbacks(app, client, settings, clock)
    warm_up()
    return app
