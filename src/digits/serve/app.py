"""The web app: the draw-a-digit page and the JSON API, on FastAPI.

Every request's CPU work (decoding, preprocessing, the model) runs in a small worker pool,
so the event loop keeps answering health checks and refusing bad requests while the
pool is busy; bodies over the limit are refused before they are read.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from digits import __version__
from digits.errors import InputError
from digits.serve import schemas
from digits.serve.inputs import Pictures, form_files, media_type, pictures_from_files, pictures_from_json
from digits.serve.middleware import BodyLimitMiddleware
from digits.serve.preprocess import Limits, decode_image
from digits.serve.reader import DigitReader

STATIC = Path(__file__).parent / "static"
WORKERS = 4  # requests decoded and predicted at once; more only queue for the same 2-8 cores
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorOut, "description": text} for code, text in
    ((413, "body, image or batch too large"), (415, "unsupported content type or image format"),
     (422, "unreadable image, wrong JSON shape or pixel values out of range"))}


def create_app(reader: DigitReader, limits: Limits | None = None) -> FastAPI:
    """The app serving ``reader``'s model under ``limits`` (default: :class:`Limits`)."""
    limits = limits or Limits()
    app = FastAPI(title="digits", version=__version__,
                  description="Read handwritten digits: draw one at /, or POST pictures to /api/predict.")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    pool = anyio.CapacityLimiter(WORKERS)

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/health", response_model=schemas.Health)
    async def health() -> dict[str, str]:
        return {"status": "ok", "model_version": reader.summary.version, "runtime": reader.summary.runtime}

    @app.get("/api/model", response_model=schemas.ModelCardOut)
    async def model() -> dict[str, Any]:
        limits_out = {"max_body_bytes": limits.max_body_bytes, "max_pixels": limits.max_pixels,
                      "max_side": limits.max_side, "max_batch": limits.max_batch}
        return {**reader.summary.to_dict(), "limits": limits_out}

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

    return app


async def _read_pictures(request: Request, limits: Limits, pool: anyio.CapacityLimiter) -> Pictures:
    kind = media_type(request.headers.get("content-type"))
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=limits.max_batch + 1, max_fields=limits.max_batch + 1)
        except InputError:
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
