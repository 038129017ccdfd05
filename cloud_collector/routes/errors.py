"""The app's error responses: a request the API cannot parse and a query the store
rejects are a 400 with one ``detail`` line; a store failure that is nobody's input error
(database down) is a 503."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cloud_collector.errors import QueryError, QueryTimeoutError, StoreError


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 400)


async def _query(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "invalid query"}, 400)


async def _store(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"store unavailable: {type(exc).__name__}"}, 503)


async def _timeout(_: Request, exc: Exception) -> JSONResponse:
    detail = "query ran longer than the collector's query timeout: narrow it (since, bbox, limit)"
    return JSONResponse({"detail": detail}, 503, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QueryTimeoutError, _timeout)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(QueryError, _query)
    app.add_exception_handler(StoreError, _store)
