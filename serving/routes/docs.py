"""``GET /docs`` (Swagger UI), ``GET /redoc`` and ``GET /openapi.json``, working offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank without internet
access. Here their scripts and stylesheet come from the installed ``fastapi-offline`` package
(Swagger UI 5, which reads the OpenAPI 3.1 schema FastAPI publishes) and are served by this
app. They are ordinary routes of the app, so ``/metrics`` labels them like any other.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from serving.errors import not_found

router = APIRouter(include_in_schema=False)

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
# Every file the pages load, with its media type: nothing else under ASSETS_DIR is served.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
# No validator badge: Swagger UI would otherwise fetch it from validator.swagger.io.
SWAGGER_UI_PARAMETERS = {**swagger_ui_default_parameters, "validatorUrl": None}


def _root(request: Request) -> str:
    """The prefix a proxy mounts the app under (uvicorn --root-path), or ""."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _asset_url(request: Request, name: str) -> str:
    return f"{_root(request)}{ASSETS_URL}/{name}"


@router.get(OPENAPI_URL)
async def get_openapi(request: Request) -> JSONResponse:
    """The schema, naming the proxy prefix as its server as FastAPI's own route does, so "Try it
    out" calls the API where the client reaches it."""
    schema, root = request.app.openapi(), _root(request)
    if root and request.app.root_path_in_servers and root not in {s.get("url") for s in schema.get("servers", [])}:
        schema = {**schema, "servers": [{"url": root}, *schema.get("servers", [])]}
    return JSONResponse(schema)


@router.get(DOCS_URL)
async def get_swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=f"{_root(request)}{OPENAPI_URL}", title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"), swagger_ui_parameters=SWAGGER_UI_PARAMETERS)


@router.get(REDOC_URL)
async def get_redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=f"{_root(request)}{OPENAPI_URL}", title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"), with_google_fonts=False)


@router.get(f"{ASSETS_URL}/{{name}}")
async def get_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found(f"no documentation asset {name!r}: the pages load {', '.join(sorted(ASSETS))}")
    return FileResponse(ASSETS_DIR / name, media_type=media_type)
