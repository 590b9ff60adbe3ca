"""Error answers: every error is ``{"detail": "<what was wrong and what to do>"}``.

Refusals the routes decide (bad interval, unknown symbol, ...) are ``ApiProblem``s; FastAPI's
own parameter validation is reshaped into the same body (the per-field list stays under
``errors``); anything unexpected is logged with its traceback and answered with a plain 500
(or 503 when the database is the cause), never a stack trace.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("serving")


class ApiProblem(Exception):
    """A request the API refuses, with the HTTP status and a sentence for the client."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def invalid(detail: str) -> ApiProblem:
    return ApiProblem(422, detail)


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, detail)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "header"))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


async def _problem(_: Request, exc: ApiProblem) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, without the "Value error, " it puts before a validator's own sentence."""
    raised = error.get("ctx", {}).get("error")
    return str(raised) if error.get("type") == "value_error" and raised else str(error.get("msg", ""))


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    detail = "; ".join(_describe(e) for e in errors) or "invalid request"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s: %s", request.url.path, exc)
    return JSONResponse({"detail": "the database is unavailable or too slow: retry shortly"},
                        status_code=503)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error: the API logged it; retry or report it"},
                        status_code=500)


class AnswerUnexpectedErrors:
    """Pure ASGI middleware answering an unexpected exception with the plain 500 itself.

    Starlette's outermost error middleware answers too, but then re-raises, and uvicorn closes
    the connection on an exception: one failing request would cost a keep-alive client its
    connection. Here the exception ends with the answer (logged once, with its traceback).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if started:
                raise  # mid-response: closing the connection is the only way left to tell the client
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    # The decorator form: Starlette's add_exception_handler types every handler as taking any
    # Exception, which a handler of one exception class is not.
    app.exception_handler(ApiProblem)(_problem)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(PoolTimeout)(_database_unavailable)
    app.exception_handler(psycopg.OperationalError)(_database_unavailable)
    app.exception_handler(Exception)(_unexpected)  # what escapes the middlewares themselves
    app.add_middleware(AnswerUnexpectedErrors)
