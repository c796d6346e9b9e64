"""Where studies live: an Optuna RDB storage, a SQLite file by default (embedded, nothing to
start) or any PostgreSQL URL, so that workers on many machines share one study.

Heartbeats mark a trial whose worker died as failed, and the retry callback queues the same
parameters again, so a crash loses no trial.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any

from digits.errors import TuneError

HEARTBEAT_SECONDS = 10   # a running trial's worker writes a heartbeat this often
GRACE_SECONDS = 30       # a trial silent this long is taken as crashed
MAX_RETRIES = 3          # a crashed trial is queued again at most this many times


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The storage URL of a SQLite file (created on first use)."""
    return f"sqlite:///{Path(path).resolve()}"


def open_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS, grace: int | None = None) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url`` with heartbeats and crash retries."""
    import optuna
    import sqlalchemy

    if not url.startswith(("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+")):
        raise TuneError(f"--storage: expected sqlite:///FILE or postgresql://..., got {url!r}")
    given, url = url, _with_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        # Several local workers write one file: wait for the lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback  # the older name (Optuna < 4.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are marked experimental
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                grace_period=grace or max(3 * heartbeat, heartbeat + 2),
                **{_callback_argument(): retry(max_retry=MAX_RETRIES)})
        except ImportError as exc:
            raise TuneError(f"--storage {_redact(given)}: no database driver ({exc}); "
                            "pip install 'digits[tune]'") from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:  # bad URL, server down, no database
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TuneError(f"--storage {_redact(given)}: cannot open ({first})") from None


def _with_driver(url: str) -> str:
    """postgresql://... names no driver, and SQLAlchemy's default differs between versions
    (psycopg2 in 2.0, psycopg 3 in 2.1): name the one digits[tune] installs."""
    if url.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        except ImportError:
            return url
    return url


def _callback_argument() -> str:
    import inspect

    import optuna

    params = inspect.signature(optuna.storages.RDBStorage).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else \
        "failed_trial_callback"


def _redact(url: str) -> str:
    # postgresql://user:secret@host/db -> postgresql://user:***@host/db
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in creds else url


def worker_name() -> str:
    """host:pid, recorded in every trial so a study shows who ran what."""
    return f"{socket.gethostname()}:{os.getpid()}"
