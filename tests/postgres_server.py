"""A real, throw-away PostgreSQL server for the tests: initdb into a temp folder, start it on
a free local port, stop it and delete everything afterwards. PostgreSQL refuses to run as
root, so under root the server runs as the unprivileged user ``nobody``."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def find_bin(name: str) -> str | None:
    """``initdb``/``pg_ctl`` on PATH or under Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a running server (user postgres, database postgres, trust auth)."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    assert initdb and pg_ctl, "PostgreSQL binaries missing: `make postgres` installs them"
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="digits-pg-")
    data = os.path.join(root, "data")
    os.chmod(root, 0o777)
    if as_user:
        os.mkdir(data, 0o700)
        shutil.chown(data, "nobody")
    port = _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, cwd=root)
        subprocess.run([*as_user, pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, cwd=root)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
