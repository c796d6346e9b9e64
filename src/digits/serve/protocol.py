"""uvicorn's h11 protocol with the connection deadlines and the connection bound it lacks.

uvicorn times out only idle keep-alive connections: one that never finishes its request
headers, or sends its body a byte at a time, is held for ever, and ``limit_concurrency``
counts such connections, so a few hundred of them make every request, health checks
included, answer 503. This subclass adds, per connection (as Apache's mod_reqtimeout does):

- a header deadline: the request line and headers must arrive within ``header_timeout_s``
  of the connection opening or of the previous answer;
- a body deadline: ``body_timeout_s`` plus one second per ``min_body_rate`` bytes received,
  so a large upload on a slow link finishes but a trickle of bytes does not;
- a bound on open connections: past ``max_connections`` the connection that has waited
  longest without a request in progress is closed to make room (as nginx reuses idle
  keep-alive connections when it runs out), so a flood of idle or slow-header sockets can
  never keep a health check from being answered.

A request that misses its deadline is answered 408 and closed; a connection that has sent
nothing is closed without an answer. The subclass relies on ``H11Protocol``'s ``conn`` (the
h11 connection), ``cycle``, ``transport`` and ``connections``, which uvicorn has kept for years.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from digits.serve.accesslog import ANSWERED
from digits.serve.settings import ConnectionLimits

# Written as raw bytes: h11 will not send a response before it has parsed a request.
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                  b"content-length: 16\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n"
                  b"request timeout\n")
FULL_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"content-length: 21\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n"
               b"too many connections\n")
SHUTDOWN_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                   b"content-length: 20\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n"
                   b"server shutting down")


def protocol_factory(limits: ConnectionLimits) -> Any:
    """The protocol class to give uvicorn as ``http=``, bound to ``limits``."""
    return functools.partial(GuardedH11Protocol, limits=limits)


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` with header and body deadlines and a bound on open connections."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.phase: str | None = None          # "headers", "body" or None (request read, or closed)
        self.phase_started = 0.0
        self.body_received = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.shutdown_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        if self.phase == "body":
            self.body_received += len(data)
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self.shutdown_timer is not None:
            self.shutdown_timer.cancel()
        self.phase = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """On SIGTERM: idle connections close now (uvicorn), a request in progress gets
        ``shutdown_timeout_s`` to finish before it is answered 503 and closed."""
        super().shutdown()
        if not self.transport.is_closing():
            self.shutdown_timer = self.loop.call_later(self.limits.shutdown_timeout_s, self._close,
                                                       SHUTDOWN_ANSWER)

    @property
    def waiting(self) -> bool:
        """True while no request is in progress: a fresh, keep-alive or slow-header connection."""
        return self.phase == "headers" and not self.transport.is_closing()

    def _watch(self) -> None:
        # h11 knows where the client is: IDLE = still sending headers, SEND_BODY = sending the body.
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if self.transport.is_closing():
            phase = None
        if phase == self.phase:
            return
        self._cancel_deadline()
        self.phase, self.phase_started, self.body_received = phase, self.loop.time(), 0
        if phase is not None:
            self.deadline = self.loop.call_at(self._due(), self._expire)

    def _due(self) -> float:
        if self.phase == "headers":
            return self.phase_started + self.limits.header_timeout_s
        allowance = self.body_received / self.limits.min_body_rate
        return self.phase_started + self.limits.body_timeout_s + allowance

    def _expire(self) -> None:
        self.deadline = None
        due = self._due()
        if self.loop.time() < due:  # the body earned more time since the timer was set
            self.deadline = self.loop.call_at(due, self._expire)
            return
        sent_nothing = self.phase == "headers" and not self.conn.trailing_data[0]
        self._close(None if sent_nothing else TIMEOUT_ANSWER)

    def _make_room(self) -> None:
        waiting = [c for c in self.connections
                   if isinstance(c, GuardedH11Protocol) and c.waiting and c is not self]
        if waiting:
            min(waiting, key=lambda c: c.phase_started)._close(None)
        else:  # every other connection has a request in progress: this one waits for nothing
            self._close(FULL_ANSWER)

    def _close(self, answer: bytes | None) -> None:
        """Close now, first writing ``answer`` where no answer to this request has begun."""
        self._cancel_deadline()
        self.phase = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
        if cycle is not None:
            if cycle.response_started:
                answer = None
            elif answer is not None:  # for the access log: what the client was told
                cycle.scope[ANSWERED] = int(answer.split(b" ", 2)[1])  # type: ignore[literal-required]
            # What connection_lost would do, at once: the app's next receive() is a disconnect
            # and nothing it sends is written after this answer.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
