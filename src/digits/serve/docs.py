"""The API docs, ``/docs`` (Swagger UI) and ``/redoc``, from assets installed with the app.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (by major version, without
subresource integrity) and ReDoc's fonts from Google: blank pages offline, and code from
elsewhere on every visit. The assets here come from the PyPI package ``fastapi-offline``
(pinned in requirements.lock), which ships Swagger UI's and ReDoc's release bundles; the
pages are ours so that they run no inline script and the Content-Security-Policy can say so.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"


def assets_directory() -> Path:
    """Where ``fastapi-offline`` installed Swagger UI's and ReDoc's bundles."""
    import fastapi_offline  # the serve extra's; imported here so a missing one names itself

    return Path(fastapi_offline.__file__).parent / "static"


def add_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Serve Swagger UI at ``/docs`` and ReDoc at ``/redoc`` for ``openapi_url`` (``app`` must be
    made with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")
    title = escape(app.title)
    spec = escape(openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(_page(f"{title}: API (Swagger UI)",
                                  f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">',
                                  f'<div id="swagger-ui" data-openapi="{spec}"></div>'
                                  f'<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>'
                                  '<script src="/static/docs.js"></script>'))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        # ReDoc's bundle renders every <redoc spec-url> element by itself: no script of ours.
        return HTMLResponse(_page(f"{title}: API (ReDoc)", "<style>body { margin: 0; }</style>",
                                  f'<redoc spec-url="{spec}"></redoc>'
                                  f'<script src="{ASSETS_URL}/redoc.standalone.js"></script>'))


def _page(title: str, head: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<link rel=\"icon\" href=\"/favicon.ico\">\n{head}\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")
