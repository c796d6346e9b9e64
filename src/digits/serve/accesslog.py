"""The access log: one line per request, as JSON lines or in the Combined Log Format.

    digits serve RUN --access-log access.jsonl --access-log-format json
    {"time": "2025-05-01T12:00:00.123Z", "client": "127.0.0.1", "method": "POST", "path": "/api/predict",
     "query": "include_image=true", "http_version": "1.1", "status": 200, "bytes": 1234,
     "duration_ms": 3.1, "host": "127.0.0.1:8000", "user_agent": "curl/8.5.0", "referer": null}

    digits serve RUN --access-log - --access-log-format text      # stdout, as Apache and nginx write it
    127.0.0.1 - - [01/May/2025:12:00:00 +0000] "POST /api/predict HTTP/1.1" 200 1234 "-" "curl/8.5.0"

Status 499 (nginx's convention) is a client that went away before its answer was sent; 408
and 503 are what the connection guard answered when a client missed a read deadline or the
server was shutting down. A log file is appended to, one write per line, and reopened when
it is moved (``WatchedFileHandler``), so logrotate needs no ``copytruncate`` and no signal.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digits.errors import ServeError
from digits.serve.settings import AccessLogFormat

ANSWERED = "digits.answered"  # set in the scope by the connection guard when it answered for the app
CLIENT_GONE = 499


def open_access_log(target: str | os.PathLike[str]) -> logging.Logger:
    """A logger writing one line per record to ``target`` (a file appended to, or ``-`` for stdout)."""
    handler: logging.Handler
    if str(target) == "-":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            handler = logging.handlers.WatchedFileHandler(target, encoding="utf-8")
        except OSError as exc:
            raise ServeError(f"--access-log {target}: cannot open it for appending "
                             f"({exc.strerror or exc})") from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"digits.access.{id(handler)}")  # one per log opened, never shared
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class AccessLogMiddleware:
    """Write one line to ``logger`` for every HTTP request, after its answer (or its failure)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger, fmt: AccessLogFormat = "json") -> None:
        self.app = app
        self.logger = logger
        self.line = json_line if fmt == "json" else text_line

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, wall = time.perf_counter(), time.time()
        answer: dict[str, Any] = {"status": None, "bytes": 0}

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except BaseException:
            answer["status"] = answer["status"] or 500
            raise
        finally:
            status = scope.get(ANSWERED) or answer["status"] or CLIENT_GONE
            # A log write is a small append to a local file, done inline as nginx does.
            self.logger.info(self.line(scope, status, answer["bytes"], wall, time.perf_counter() - started))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def json_line(scope: Scope, status: int, size: int, wall: float, seconds: float) -> str:
    """One JSON object on one line (json.dumps escapes newlines, so a client cannot forge lines)."""
    moment = datetime.fromtimestamp(wall, timezone.utc)
    client = scope.get("client")
    return json.dumps({
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "client": client[0] if client else None, "method": scope["method"], "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"), "http_version": scope["http_version"],
        "status": status, "bytes": size, "duration_ms": round(seconds * 1000, 3),
        "host": _header(scope, b"host"), "user_agent": _header(scope, b"user-agent"),
        "referer": _header(scope, b"referer")})


def text_line(scope: Scope, status: int, size: int, wall: float, seconds: float) -> str:
    """The Combined Log Format, so goaccess, awstats and the like read it as they read nginx's."""
    client = scope.get("client")
    moment = datetime.fromtimestamp(wall).astimezone().strftime("%d/%b/%Y:%H:%M:%S %z")
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    request = f"{scope['method']} {_escape(target.decode('latin-1'))} HTTP/{scope['http_version']}"
    referer, agent = _header(scope, b"referer"), _header(scope, b"user-agent")
    return (f'{client[0] if client else "-"} - - [{moment}] "{request}" {status} {size or "-"} '
            f'"{_escape(referer or "-")}" "{_escape(agent or "-")}"')


def _escape(text: str) -> str:
    # As nginx escapes: quotes, backslashes and anything unprintable become \xHH.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\x{ord(c):02X}" for c in text)
