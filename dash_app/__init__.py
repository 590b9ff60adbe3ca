"""The alphastream dashboard: Plotly Dash over the REST API (never the database).

``python -m dash_app`` serves it. ``layout`` builds the page, ``callbacks`` wires it, and
``api_client`` is the only module that talks to the API; the figures, indicators and view
logic are plain functions in ``figures``, ``indicators`` and ``views``.
"""
