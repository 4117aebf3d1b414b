"""One error shape for every failure: `{"error": {"code": ..., "message": ...}}`.

Durable's own errors already say what failed and what to do; here each kind gets an HTTP status
and a stable code that scripts can branch on. Malformed input is always a 4xx: a 500 means a bug.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from durable.errors import (
    BulkJobNotFound,
    CallbackNotFound,
    DurableError,
    EventNotFound,
    KeyNotFound,
    OperationNotFound,
    RunIdTaken,
    RunNotEnded,
    RunNotFound,
    RunStateConflict,
    ScheduleExists,
    ScheduleNotFound,
    SerializationError,
    StoreUnusable,
    UsageError,
)
from durable.model.attributes import FilterError

log = logging.getLogger("durable.server")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raised by routes for a failure with its own status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "Bad input: the message says what to change"),
        (401, "A token is required: `Authorization: Bearer <token>` or the login cookie"),
        (403, "A write from another site's page, refused"),
        (404, "No such run, operation, callback, workflow or schedule"),
        (409, "Conflicts with a run or schedule that exists, or with the state it is in"),
        (413, "The body is larger than the server takes (`--max-body`)"),
        (422, "The request does not match the schema"),
    ]
}
"""Documented on every API route, so clients and schema-driven tests know every shape."""


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/hooks/", "/openapi")) or request.method != "GET":
        return False
    return "text/html" in request.headers.get("accept", "")


def unauthenticated(request: Request) -> Response:
    """No valid token: JSON 401 for API clients, a redirect to the login form for browsers."""
    if _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return error_response(401, "unauthorized", "this server requires a token: send "
                          "`Authorization: Bearer <token>` (DURABLE_TOKEN of the server)",
                          {"WWW-Authenticate": "Bearer"})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


_DURABLE_ERRORS: tuple[tuple[type[DurableError], int, str], ...] = (
    (RunNotFound, 404, "run_not_found"),
    (CallbackNotFound, 404, "callback_not_found"),
    (OperationNotFound, 404, "operation_not_found"),
    (BulkJobNotFound, 404, "bulk_job_not_found"),
    (ScheduleNotFound, 404, "schedule_not_found"),
    (KeyNotFound, 404, "key_not_found"),
    (EventNotFound, 404, "event_not_found"),
    (StoreUnusable, 503, "store_unusable"),  # the database, not the request
    (RunIdTaken, 409, "run_id_taken"),
    (RunNotEnded, 409, "run_not_ended"),
    (RunStateConflict, 409, "wrong_run_state"),
    (ScheduleExists, 409, "schedule_exists"),
    (FilterError, 400, "bad_filter"),
    (SerializationError, 400, "bad_value"),
    (UsageError, 400, "bad_request"),
)
"""Each error of Durable's as the API answers it, the first that matches: the specific ones
before `UsageError`, which most of them are; any other is a 409 `conflict`."""


async def _durable_error(request: Request, exc: Exception) -> Response:
    status, code = next(((status, code) for kind, status, code in _DURABLE_ERRORS
                         if isinstance(exc, kind)), (409, "conflict"))
    return error_response(status, code, str(exc))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"),
                          str(exc.detail), getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", f"internal error: {type(exc).__name__}; "
                          "the server log has the traceback")


def install(app: FastAPI) -> None:
    """Route every exception kind to the one error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DurableError, _durable_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
