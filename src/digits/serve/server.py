"""Running the app on uvicorn, guarded so that slow, idle or too many clients starve no one.

uvicorn's own ``limit_concurrency`` is left off: it counts open connections, so a few
hundred idle sockets made every request answer 503, health checks included. In its place
``protocol.GuardedH11Protocol`` bounds connections and the time a client may take to send
a request, and ``middleware.RequestLimitMiddleware`` bounds the requests in progress.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Sequence

from digits.errors import ServeError
from digits.serve.accesslog import open_access_log
from digits.serve.middleware import LOOPBACK_NAMES
from digits.serve.preprocess import Limits
from digits.serve.protocol import protocol_factory
from digits.serve.reader import DigitReader
from digits.serve.settings import AccessLogFormat, ConnectionLimits


def run_server(run_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
               runtime: str = "torch", limits: Limits | None = None, *,
               connections: ConnectionLimits | None = None, allowed_hosts: Sequence[str] = (),
               access_log: str | None = None, access_log_format: AccessLogFormat = "json") -> None:
    """Load the model of ``run_dir`` and serve it until interrupted.

    ``allowed_hosts`` adds Host names to those answered; bound to a loopback address the
    server answers only to loopback names and these (``*``: any), which stops DNS rebinding.
    ``access_log``: a file to append one line per request to, or ``-`` for stdout.
    """
    import uvicorn

    from digits.serve.app import create_app

    connections = connections or ConnectionLimits()
    _check_can_listen(host, port)  # before loading anything: a clear error, not uvicorn's log line
    logger = open_access_log(access_log) if access_log is not None else None
    reader = DigitReader.open(run_dir, runtime)
    if runtime == "torch":
        _one_thread_per_request()
    app = create_app(reader, limits, allowed_hosts=answered_hosts(host, allowed_hosts),
                     max_requests=connections.max_requests, access_log=logger,
                     access_log_format=access_log_format)
    sys.stderr.write(f"digits: serving {reader.summary.what} ({reader.summary.version}, "
                     f"{runtime}) on http://{_url_host(host)}:{port}/\n")
    uvicorn.run(app, host=host, port=port, http=protocol_factory(connections), ws="none",
                timeout_keep_alive=connections.keep_alive_s,  # type: ignore[arg-type]  # a float is fine
                # A backstop only: the protocol itself closes requests still running at shutdown_timeout_s.
                timeout_graceful_shutdown=connections.shutdown_timeout_s + 2,  # type: ignore[arg-type]
                log_level="warning", access_log=False)


def answered_hosts(bind: str, extra: Sequence[str] = ()) -> list[str] | None:
    """The Host names the server answers to when bound to ``bind``, None for any."""
    if "*" in extra:
        return None
    if is_loopback(bind):
        return [*LOOPBACK_NAMES, *extra]
    return [*LOOPBACK_NAMES, *extra] if extra else None


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_can_listen(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: unknown address ({exc.strerror})") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}; is another server there? "
                             f"choose another --port") from None


def _one_thread_per_request() -> None:
    # Requests run side by side in the worker pool; torch's own intra-op threads on top
    # of that only oversubscribe the cores (each forward pass is well under 1 ms of work).
    import torch

    torch.set_num_threads(1)
