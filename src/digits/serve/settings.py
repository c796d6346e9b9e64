"""The server's connection limits and access-log formats as plain data.

Importable without uvicorn or FastAPI: the CLI builds ``digits serve``'s flags and their
defaults from them while ``digits --help`` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AccessLogFormat = Literal["json", "text"]
ACCESS_LOG_FORMATS: tuple[AccessLogFormat, ...] = ("json", "text")
MAX_REQUESTS = 64  # in progress at once (reading, queued or predicting); past it 503, health excepted


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request, and how many connections are held at once."""

    header_timeout_s: float = 10.0    # connection open (or previous answer) to the end of the headers
    body_timeout_s: float = 10.0      # end of the headers to the end of the body, plus the rate allowance
    min_body_rate: int = 10_000       # bytes/s: each 10 kB received earns the body another second
    keep_alive_s: float = 5.0         # an idle keep-alive connection is closed after this
    max_connections: int = 512        # open at once; past it the longest-waiting idle one is closed
    shutdown_timeout_s: float = 10.0  # on SIGTERM, requests in progress get this long to finish

    @property
    def max_requests(self) -> int:
        """Requests in progress at once: at most ``MAX_REQUESTS`` and half the connections, so
        that the other half are idle or free and a new connection (a health check) finds room."""
        return max(1, min(MAX_REQUESTS, self.max_connections // 2))
