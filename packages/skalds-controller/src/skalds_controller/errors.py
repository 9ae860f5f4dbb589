"""The API's error model: ``{error, detail, code, timestamp}``, never a leaked traceback."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from skalds.errors import BackendUnavailableError, SkaldsError
from skalds.utils.logging import logger
from skalds.utils.time import now_ms

__all__ = ["ApiError", "install_error_handlers"]

_DEFAULT_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


class ApiError(Exception):
    """An error the API reports as it is (status, machine code, human message, details)."""

    def __init__(self, status: int, code: str, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.code = code
        self.error = error
        self.detail = detail


def body(code: str, error: str, detail: Any = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": error, "detail": detail, "code": code, "timestamp": now_ms()}


def install_error_handlers(app: FastAPI) -> None:
    """Turn every failure into the error model; unexpected ones into a bare 500."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.error, exc.detail), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
                "message": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        return JSONResponse(
            body("VALIDATION_ERROR", "the request is not valid", fields), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _DEFAULT_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(
            body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(BackendUnavailableError)
    async def _unavailable(request: Request, exc: BackendUnavailableError) -> JSONResponse:
        return JSONResponse(body("SERVICE_UNAVAILABLE", str(exc)), status_code=503)

    @app.exception_handler(SkaldsError)
    async def _skalds(request: Request, exc: SkaldsError) -> JSONResponse:
        return JSONResponse(body("BAD_REQUEST", str(exc)), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(body("INTERNAL_ERROR", "internal error"), status_code=500)
