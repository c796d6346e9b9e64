"""Running the app on uvicorn, with settings that keep one busy client from starving others."""

from __future__ import annotations

import os
import socket
import sys

from digits.errors import ServeError
from digits.serve.preprocess import Limits
from digits.serve.reader import DigitReader

MAX_CONNECTIONS = 256   # beyond this uvicorn answers 503 at once instead of queueing without bound
KEEP_ALIVE_S = 5        # idle connections are closed after this


def run_server(run_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
               runtime: str = "torch", limits: Limits | None = None) -> None:
    """Load the model of ``run_dir`` and serve it until interrupted."""
    import uvicorn

    from digits.serve.app import create_app

    _check_can_listen(host, port)  # before loading anything: a clear error, not uvicorn's log line
    reader = DigitReader.open(run_dir, runtime)
    if runtime == "torch":
        _one_thread_per_request()
    app = create_app(reader, limits)
    sys.stderr.write(f"digits: serving {reader.summary.architecture} ({reader.summary.version}, "
                     f"{runtime}) on http://{host}:{port}/\n")
    uvicorn.run(app, host=host, port=port, limit_concurrency=MAX_CONNECTIONS,
                timeout_keep_alive=KEEP_ALIVE_S, log_level="warning", access_log=False)


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
