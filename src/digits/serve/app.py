"""The web app: the draw-a-digit page and the JSON API, on FastAPI.

Every request's CPU work (decoding, preprocessing, the model) runs in a small worker pool,
so the event loop keeps answering health checks and refusing bad requests while the
pool is busy; bodies over the limit are refused before they are read. Every answer, FastAPI's
own 500s included, carries the security headers and gets its access-log line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from digits import __version__
from digits.errors import InputError
from digits.serve import schemas
from digits.serve.accesslog import CLIENT_GONE, AccessLogMiddleware
from digits.serve.docs import add_docs
from digits.serve.inputs import Pictures, form_files, media_type, pictures_from_files, pictures_from_json
from digits.serve.middleware import (BodyLimitMiddleware, HeadAsGetMiddleware, HostCheckMiddleware,
                                     RequestLimitMiddleware, SecurityHeadersMiddleware)
from digits.serve.preprocess import Limits, decode_image
from digits.serve.reader import DigitReader
from digits.serve.settings import MAX_REQUESTS, AccessLogFormat

STATIC = Path(__file__).parent / "static"
WORKERS = 4  # requests decoded and predicted at once; more only queue for the same 2-8 cores
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorOut, "description": text} for code, text in
    ((413, "body, image or batch too large"), (415, "unsupported content type or image format"),
     (422, "unreadable image, wrong JSON shape or pixel values out of range"))}


def create_app(reader: DigitReader, limits: Limits | None = None, *,
               allowed_hosts: Sequence[str] | None = None, max_requests: int = MAX_REQUESTS,
               access_log: logging.Logger | None = None,
               access_log_format: AccessLogFormat = "json") -> ASGIApp:
    """The app serving ``reader``'s model under ``limits`` (default: :class:`Limits`).

    ``allowed_hosts``: the Host names answered (any port), None for any; ``max_requests``:
    requests in progress before 503; ``access_log``: where each request's line goes
    (:func:`digits.serve.accesslog.open_access_log`), in ``access_log_format``.
    """
    limits = limits or Limits()
    app = FastAPI(title="digits", version=__version__, docs_url=None, redoc_url=None,
                  description="Read handwritten digits: draw one at /, or POST pictures to /api/predict.")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_docs(app)
    pool = anyio.CapacityLimiter(WORKERS)

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        # A client that closed its connection mid-upload is routine, not a server error: no
        # traceback; the access log records 499, and this answer goes nowhere.
        return Response(status_code=CLIENT_GONE)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # An SVG icon: every current browser takes one, whatever the URL it asked for.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/health", response_model=schemas.Health)
    async def health() -> dict[str, str]:
        return {"status": "ok", "model_version": reader.summary.version, "runtime": reader.summary.runtime}

    @app.get("/api/model", response_model=schemas.ModelCardOut)
    async def model() -> dict[str, Any]:
        limits_out = {"max_body_bytes": limits.max_body_bytes, "max_pixels": limits.max_pixels,
                      "max_side": limits.max_side, "max_batch": limits.max_batch}
        return {**reader.summary.to_dict(), "limits": limits_out, "calibration": reader.calibration.describe()}

    @app.post("/api/predict", response_model=schemas.Prediction | schemas.BatchPrediction,
              responses=ERRORS, openapi_extra={"requestBody": schemas.PREDICT_BODY})
    async def predict(request: Request,
                      preprocess: bool = Query(True, description="MNIST-style preprocessing; false: "
                                               "pixels are already a 28x28 model input"),
                      include_image: bool = Query(False, description="also return the 28x28 image "
                                                  "the model saw")) -> dict[str, Any]:
        """Read the digit in a PNG/JPEG, a multipart upload or a JSON pixel array (or a batch)."""
        pictures = await _read_pictures(request, limits, pool)
        readings = await anyio.to_thread.run_sync(partial(reader.read, pictures.pictures, preprocess),
                                                  limiter=pool)
        version = reader.summary.version
        if not pictures.batch:
            return {**readings[0].to_dict(include_image), "model_version": version}
        return {"model_version": version, "predictions": [r.to_dict(include_image) for r in readings]}

    return _outer_layers(app, allowed_hosts, max_requests, access_log, access_log_format)


def _outer_layers(app: FastAPI, allowed_hosts: Sequence[str] | None, max_requests: int,
                  access_log: logging.Logger | None, access_log_format: AccessLogFormat) -> ASGIApp:
    # Outside FastAPI's own middleware stack, whose outermost layer (ServerErrorMiddleware)
    # would otherwise answer a 500 past them: without headers, and unlogged.
    outer: ASGIApp = RequestLimitMiddleware(HeadAsGetMiddleware(app), max_requests)
    if allowed_hosts is not None:
        outer = HostCheckMiddleware(outer, allowed_hosts)
    outer = SecurityHeadersMiddleware(outer)
    if access_log is not None:
        outer = AccessLogMiddleware(outer, access_log, access_log_format)
    return outer


async def _read_pictures(request: Request, limits: Limits, pool: anyio.CapacityLimiter) -> Pictures:
    kind = media_type(request.headers.get("content-type"))
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=limits.max_batch + 1, max_fields=limits.max_batch + 1)
        except (InputError, ClientDisconnect):
            raise
        except Exception as exc:  # python-multipart's and starlette's parse errors have no common base
            raise InputError(f"malformed multipart form ({exc})") from None
        try:
            files = form_files(form)
        finally:
            await form.close()
        return await anyio.to_thread.run_sync(pictures_from_files, files, limits, limiter=pool)
    body = await request.body()
    if kind == "application/json":
        return await anyio.to_thread.run_sync(pictures_from_json, body, limits, limiter=pool)
    gray = await anyio.to_thread.run_sync(decode_image, body, limits, limiter=pool)
    return Pictures([gray], batch=False)
