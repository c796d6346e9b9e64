"""The app's plain ASGI middleware: body limit, request limit, Host check, HEAD, security headers.

A declared Content-Length over the limit is answered 413 at once, without reading a
byte of the body. A chunked body is counted as it arrives and cut off at the limit.
The others are described where they are defined; ``app.create_app`` stacks them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digits.errors import InputError


class BodyTooLarge(InputError):
    """Raised from ``receive`` when a streamed body passes the limit; the app answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body is over the limit of {max_bytes:,} bytes", 413)


class BodyLimitMiddleware:
    """Answer 413 to any HTTP request whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, f"request body of {declared:,} bytes is over the limit of {self.max_bytes:,}")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where nothing turned it into a response
            if not started:
                await _refuse(send, str(exc))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server itself rejects a malformed length
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


# Every page loads nothing from elsewhere, runs no inline script and may not be framed.
# ReDoc alone writes <style> elements (styled-components) and runs its search in a worker
# made from a blob: URL: its page gets those two, the draw-a-digit page and Swagger UI not.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
REDOC_POLICY = PAGE_POLICY + "; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"
REDOC_PATH = "/redoc"
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin"))


class SecurityHeadersMiddleware:
    """Add a Content-Security-Policy and the usual hardening headers to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = REDOC_POLICY if scope["path"] == REDOC_PATH else PAGE_POLICY

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                wanted = ((b"content-security-policy", policy.encode()), *SECURITY_HEADERS)
                added = [(name, value) for name, value in wanted if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, guarded_send)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class HostCheckMiddleware:
    """Answer 400 to a request whose Host header names none of ``allowed`` (any port).

    Bound to loopback, this is what stops DNS rebinding: a page on another site whose name
    is made to resolve to 127.0.0.1 can reach the server, but its requests carry that site's
    name as Host. Written here rather than with Starlette's TrustedHostMiddleware for an answer
    that says which names are accepted and how to add one, and for bracketed IPv6 hosts on
    every Starlette this project accepts.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = tuple(dict.fromkeys(name.lower().rstrip(".") for name in allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"host"),
                   None)
        if raw is not None and host_name(raw) in self.allowed:
            await self.app(scope, receive, send)
            return
        told = "no Host header" if raw is None else f"Host {raw!r}"
        await _answer(send, 400, f"{told} is not a name this server answers to (expected one of "
                                 f"{', '.join(self.allowed)}, with any port; add names with --allowed-host)")


def host_name(header: str) -> str | None:
    """The name in a Host header value, lower-cased, without its port: ``[::1]:80`` -> ``[::1]``;
    None where the value is not a host with an optional numeric port."""
    value = header.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
    else:
        name, _, rest = value.partition(":")
        rest = ":" + rest if _ else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    name = name.rstrip(".")
    return name or None


class RequestLimitMiddleware:
    """Answer 503 at once past ``max_requests`` requests in progress, so work never queues
    without bound; requests for ``exempt`` paths (the health check) are always let through."""

    def __init__(self, app: ASGIApp, max_requests: int, exempt: Sequence[str] = ("/api/health",)) -> None:
        self.app = app
        self.max_requests = max_requests
        self.exempt = frozenset(exempt)
        self.active = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_requests:
            await _answer(send, 503, f"busy: {self.active} requests in progress; retry shortly",
                          (b"retry-after", b"1"), (b"connection", b"close"))
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class HeadAsGetMiddleware:
    """Answer HEAD wherever GET is answered: the GET answer's status and headers, no body.

    FastAPI routes a ``@app.get`` for GET only, so HEAD would get 405 from every one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def bodiless_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, bodiless_send)
