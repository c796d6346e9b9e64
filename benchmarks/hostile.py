"""Reliability benchmark: the hostile-input probe's families against a fresh run, as a table.

    python benchmarks/hostile.py [--quick] [--json out.json] [--seed 0] [--jobs 2]

It trains a tiny tutorial-mlp run on tests/fixtures into a temporary folder, then runs:

- bad files: malformed CSVs and zips (wrong header, missing or extra columns, non-integers,
  out-of-range and 5,000-digit integers, empty, header-only, binary garbage, a directory, a FIFO,
  a device, a zip bomb, corrupt and truncated zips; a leading BOM is read past, as pandas does,
  and tested in tests/test_hostile_inputs.py) given to ``data check``, ``train``,
  ``predict --test`` and ``score``;
- damaged runs: model.json / config.json / ensemble.json / checkpoint state.json of the wrong
  JSON types, nested 100,000 deep, huge model arguments, weights that are /dev/zero, a FIFO,
  an 8 GB sparse file, NaN or truncated, given to ``predict``, ``report``, ``serve`` start-up
  and ``train --resume``;
- slow and idle clients against a real ``digits serve`` on 127.0.0.1 (idle sockets, slow
  headers, slow bodies, uploads cut off, held request slots, a foreign Host, HEAD, SIGTERM
  during an upload), each checking that /api/health stays answerable;
- kills: SIGKILL at seeded random moments during every command that writes (data prepare,
  train, predict, report, score, export), then no half-written output, and a rerun that works
  and leaves no temporary file behind, every output present and complete.

A refusal passes when the command exits 2 with exactly one line on stderr (no traceback),
names its file where it refuses one, creates nothing, ends within --timeout and stays under
--memory-gb (an address-space limit on the child, and its peak RSS). Server cases pass when
the server answers as described and stays healthy. Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HOST = "127.0.0.1"  # loopback only, by design
TEMPORARY = re.compile(r"^\..+\.tmp$|\.tmp$|\.partial$")  # what atomic writes leave if they are cut off


# --- running a command -------------------------------------------------------------------

@dataclass(frozen=True)
class Ran:
    code: int | None          # None: killed by us (timeout or a planned SIGKILL)
    stderr: str
    seconds: float
    peak_mb: float
    timed_out: bool


@dataclass
class Settings:
    timeout: float
    memory_gb: float
    env: dict[str, str] = field(default_factory=dict)


def digits_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "digits.cli", *args]


def run(command: list[str], settings: Settings, cwd: Path, kill_after: float | None = None) -> Ran:
    """Run ``command`` with an address-space limit; kill it at ``kill_after`` s or at the timeout."""
    limit = int(settings.memory_gb * 2**30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=settings.env, preexec_fn=limit_memory)
        stop_at = started + (kill_after if kill_after is not None else settings.timeout)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= stop_at:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it is reaped
        seconds = time.monotonic() - started
        err.seek(0)
        text = err.read()
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and time.monotonic() >= stop_at
    return Ran(None if killed else os.waitstatus_to_exitcode(status), text, seconds, usage.ru_maxrss / 1024,
               killed and kill_after is None)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def refusal_problem(ran: Ran, settings: Settings, created: set[str], names: str | None) -> str | None:
    """Why ``ran`` is not a clean refusal, or None when it is one."""
    lines = ran.stderr.splitlines()
    if ran.timed_out:
        return f"no answer within {settings.timeout:.0f} s"
    if ran.peak_mb > settings.memory_gb * 1024:
        return f"peak memory {ran.peak_mb:,.0f} MB"
    if ran.code != 2:
        tail = lines[-1][:120] if lines else ""
        return f"exit {ran.code}" + (f" ({len(lines)} lines on stderr; last: {tail})" if lines else "")
    if "Traceback" in ran.stderr or len(lines) != 1:
        return f"{len(lines)} lines on stderr" + (" with a traceback" if "Traceback" in ran.stderr else "")
    if names and "no such file" in lines[0] and Path(names).exists():
        return f"says 'no such file' for a file that exists: {lines[0][:120]}"
    if created:
        return f"left {', '.join(sorted(created)[:4])}"
    return None


# --- results -----------------------------------------------------------------------------

@dataclass
class Outcome:
    family: str
    case: str
    problem: str | None  # None: passed

    @property
    def passed(self) -> bool:
        return self.problem is None


# --- bad files ---------------------------------------------------------------------------

def _rows(kind: str, count: int = 20) -> list[str]:
    name = {"train": "train.csv", "test": "test.csv", "submission": "solution.csv"}[kind]
    with (FIXTURES / name).open() as f:
        return [next(f).rstrip("\n") for _ in range(count + 1)]


def _zip(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)
    return path


def _zip_bomb(path: Path, member: str, header: str, uncompressed: int) -> Path:
    """A zip whose ``member`` is ``header`` then ``uncompressed`` bytes of zero pixels, written
    stream by stream so the benchmark never holds the inflated member."""
    row = ("0," * 784)[:-1] + "\n"
    if header.startswith("label"):
        row = "0," + row
    chunk = (row * (2**20 // len(row) + 1)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z, z.open(member, "w") as out:
        out.write((header + "\n").encode())
        written = 0
        while written < uncompressed:
            out.write(chunk)
            written += len(chunk)
    return path


def bad_files(kind: str, folder: Path, quick: bool) -> dict[str, Path]:
    """Malformed variants of a small valid ``kind`` file (train, test or submission) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _rows(kind)
    header, body = rows[0], rows[1:]
    member = {"train": "train.csv", "test": "test.csv", "submission": "submission.csv"}[kind]
    first = body[0].split(",")

    def text(name: str, lines: list[str], prefix: str = "") -> Path:
        path = folder / f"{name}.csv"
        path.write_text(prefix + "\n".join(lines) + "\n")
        return path

    def with_field(value: str, column: int = -1) -> list[str]:
        changed = list(first)
        changed[column] = value
        return [header, ",".join(changed), *body[1:]]

    out = {
        "wrong header": text("wrong-header", [header.replace(header.split(",")[0], "Label", 1), *body]),
        "missing column": text("missing-column", [header] + [",".join(r.split(",")[:-1]) for r in body]),
        "extra column": text("extra-column", [header] + [r + ",0" for r in body]),
        "non-integer": text("non-integer", with_field("3.5")),
        "out of range": text("out-of-range", with_field("300" if kind != "submission" else "10")),
        "negative": text("negative", with_field("-1")),
        "plus zero": text("plus-zero", with_field("+0")),
        "huge integer": text("huge-integer", with_field("9" * 5000)),
        "empty": _empty(folder / "empty.csv"),
        "header only": text("header-only", [header]),
        "binary garbage": _garbage(folder / "garbage.csv"),
        "a directory": _directory(folder / "directory.csv"),
        "a FIFO": _fifo(folder / "fifo.csv"),
        "a device": Path("/dev/zero"),
        "corrupt zip": _corrupt(_zip(folder / "corrupt.zip", member, "\n".join(rows * 20).encode())),
        "truncated zip": _truncate(_zip(folder / "truncated.zip", member, "\n".join(rows * 20).encode())),
    }
    if kind != "submission":
        # Zero pixels deflate about 1000:1: a limit on the ratio refuses it at any size.
        out["zip bomb"] = _zip_bomb(folder / "bomb.zip", member, header, (2**26 if quick else 2**30))
    return out


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(random.Random(0).randbytes(100_000))
    return path


def _directory(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _corrupt(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    start = 30 + len(zipfile.ZipFile(path).namelist()[0])  # the local header, then the deflate stream
    for i in range(start + 10, start + 60):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bad_file_cases(work: Path, run_dir: Path, quick: bool) -> list[tuple[str, list[str], str]]:
    """(case name, command, the file it names) for every bad file and every command that reads one."""
    cases = []
    train_files = bad_files("train", work / "bad" / "train", quick)
    test_files = bad_files("test", work / "bad" / "test", quick)
    sub_files = bad_files("submission", work / "bad" / "submission", quick)
    picks = ("huge integer", "a FIFO", "corrupt zip", "zip bomb")
    for name, path in train_files.items():
        if quick and name not in picks:
            continue
        cases.append((f"data check: {name}", digits_command("data", "check", str(path)), str(path)))
        cases.append((f"train: {name}", digits_command("train", "--train", str(path), "--model",
                                                      "tutorial-mlp", "--epochs", "1", "--no-report", "-q",
                                                      "--out", "OUT/run"), str(path)))
    for name, path in test_files.items():
        if quick and name not in picks:
            continue
        cases.append((f"predict --test: {name}", digits_command("predict", str(run_dir), "--test", str(path),
                                                                "--out", "OUT/submission.csv"), str(path)))
    good_submission = work / "good-submission.csv"
    for name, path in sub_files.items():
        if quick and name not in picks:
            continue
        cases.append((f"score: {name}", digits_command("score", str(path), "--solution",
                                                       str(FIXTURES / "solution.csv")), str(path)))
        cases.append((f"score --solution: {name}", digits_command("score", str(good_submission), "--solution",
                                                                  str(path)), str(path)))
    return cases


def run_refusals(family: str, cases: list[tuple[str, list[str], str]], work: Path, settings: Settings,
                 jobs: int) -> list[Outcome]:
    """Run each case in a folder of its own (OUT in a command is that folder) and judge it."""
    def one(index: int, case: tuple[str, list[str], str]) -> Outcome:
        name, command, names = case
        out = work / "cases" / f"{family.replace(' ', '-')}-{index:03d}"
        out.mkdir(parents=True)
        before = snapshot(out)
        ran = run([a.replace("OUT/", f"{out}/") for a in command], settings, out)
        return Outcome(family, name, refusal_problem(ran, settings, snapshot(out) - before, names))

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, range(len(cases)), cases))


# --- damaged run directories -------------------------------------------------------------

def _edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        data = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(change(data)))
    return damage


def _set(key: str, value: object) -> Callable[[dict], dict]:
    return lambda data: {**data, key: value}


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda run_dir: (run_dir / name).write_text(text)


def _weights(kind: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        weights = run_dir / "model.safetensors"
        if kind == "nan":
            from safetensors.numpy import load_file, save_file

            tensors = {k: v.copy() for k, v in load_file(weights).items()}
            for v in tensors.values():
                v[...] = float("nan")
            save_file(tensors, str(weights), metadata={"architecture": "tutorial-mlp", "format": "1"})
            return
        if kind == "truncated":
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            return
        weights.unlink()
        if kind == "/dev/zero":
            weights.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(weights)
        elif kind == "sparse 8 GB":
            with weights.open("wb") as f:
                f.truncate(8 * 2**30)
    return damage


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


MODEL_DAMAGE: dict[str, Callable[[Path], None]] = {
    "model.json an array": _write("model.json", "[]"),
    "model.json truncated": lambda r: (r / "model.json").write_text((r / "model.json").read_text()[:40]),
    "model.json empty": _write("model.json", ""),
    "architecture a number": _edit_json("model.json", _set("architecture", 5)),
    "args a list": _edit_json("model.json", _set("args", [1, 2])),
    "normalization a string": _edit_json("model.json", _set("normalization", "none")),
    "hidden 10**9": _edit_json("model.json",
                               lambda d: {**d, "architecture": "mlp", "args": {"hidden": [10**9]}}),
    "parameters a string": _edit_json("model.json", _set("parameters", "many")),
    "model.json nested 100,000 deep": _write("model.json", _deep(100_000)),
    "metrics.json final a list": _edit_json("metrics.json", _set("final", [1])),
    "weights are /dev/zero": _weights("/dev/zero"),
    "weights a FIFO": _weights("fifo"),
    "weights an 8 GB sparse file": _weights("sparse 8 GB"),
    "weights all NaN": _weights("nan"),
    "weights truncated": _weights("truncated"),
    "ensemble.json without members": _write("ensemble.json", "{}"),
    "ensemble.json empty members": _write("ensemble.json", '{"members": []}'),
    "ensemble.json integer members": _write("ensemble.json", '{"members": 3}'),
    "config.json train a list": _edit_json("config.json", _set("train", [])),
}
RESUME_DAMAGE: dict[str, Callable[[Path], None]] = {
    "state.json an array": _write("checkpoint/state.json", "[]"),
    "state.json optimizer a string": _edit_json("checkpoint/state.json", _set("optimizer", "adam")),
    "state.json epoch a string": _edit_json("checkpoint/state.json", _set("epoch", "three")),
    "state.json nested 100,000 deep": _write("checkpoint/state.json", _deep(100_000)),
    "config.json without data": _edit_json("config.json",
                                           lambda d: {k: v for k, v in d.items() if k != "data"}),
    "config.json train a list": _edit_json("config.json", _set("train", [])),
}


def _damaged_copy(run: Path, folder: Path, name: str, damage: Callable[[Path], None]) -> Path:
    """A copy of ``run`` in ``folder``, named after the damage ``name``, with ``damage`` done to it."""
    damaged = folder / re.sub(r"\W+", "-", name)
    shutil.copytree(run, damaged, symlinks=True)
    damage(damaged)
    return damaged


def damaged_run_cases(work: Path, run_dir: Path, resumable: Path | None, settings: Settings,
                      quick: bool) -> list[tuple[str, list[str], str]]:
    cases = []
    picks = ("hidden 10**9", "weights are /dev/zero", "weights all NaN", "state.json an array")
    for name, damage in MODEL_DAMAGE.items():
        if quick and name not in picks:
            continue
        damaged = _damaged_copy(run_dir, work / "damaged", name, damage)
        if not name.startswith("metrics.json"):  # predict reads no metrics.json: nothing to refuse
            cases.append((f"predict: {name}", digits_command("predict", str(damaged), "--test",
                                                             str(FIXTURES / "test.csv"), "--out", "OUT/sub.csv"),
                          ""))
        cases.append((f"report: {name}", digits_command("report", str(damaged), "--out", "OUT/report.html"),
                      ""))
        cases.append((f"serve: {name}", ["SERVE", str(damaged)], ""))
    if resumable is not None:
        for name, damage in RESUME_DAMAGE.items():
            if quick and name not in picks:
                continue
            damaged = _damaged_copy(resumable, work / "damaged-resume", name, damage)
            cases.append((f"train --resume: {name}", digits_command("train", "--resume", str(damaged), "-q"),
                          ""))
    return cases


def run_damaged(cases: list[tuple[str, list[str], str]], work: Path, settings: Settings,
                jobs: int) -> list[Outcome]:
    """Like ``run_refusals``; ``serve`` cases fail when the server comes up and answers."""
    plain = [c for c in cases if c[1][0] != "SERVE"]
    outcomes = run_refusals("damaged runs", plain, work, settings, jobs)

    def serve_case(case: tuple[str, list[str], str]) -> Outcome:
        name, (_, damaged), _ = case
        port = free_port()
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(digits_command("serve", damaged, "--port", str(port)),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    env=settings.env,
                                    preexec_fn=lambda: resource.setrlimit(
                                        resource.RLIMIT_AS, (int(settings.memory_gb * 2**30),) * 2))
            deadline, answered = time.monotonic() + min(settings.timeout, 30), False
            while time.monotonic() < deadline and proc.poll() is None:
                if health(port) == 200:
                    answered = True
                    break
                time.sleep(0.2)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err.seek(0)
            text = err.read()
        if answered:
            return Outcome("damaged runs", name, "served the damaged run (health answered 200)")
        ran = Ran(proc.returncode if proc.returncode >= 0 else None, text, 0.0, 0.0, proc.returncode < 0)
        limits = Settings(min(settings.timeout, 30), settings.memory_gb)
        return Outcome("damaged runs", name, refusal_problem(ran, limits, set(), None))

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        outcomes += list(pool.map(serve_case, [c for c in cases if c[1][0] == "SERVE"]))
    return outcomes


# --- slow and idle clients ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def health(port: int, host: str | None = None, method: str = "GET", timeout: float = 5.0) -> int | str:
    request = urllib.request.Request(f"http://{HOST}:{port}/api/health", method=method,
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def _answer(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while chunk := sock.recv(4096):
            reply += chunk
    except OSError:
        pass
    return reply


def _trickle(sock: socket.socket, data: bytes, every: float = 0.1) -> None:
    for byte in data:
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


UPLOAD = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
          b"Content-Length: 100000\r\n\r\n")
DEADLINE = 2.0  # the server's header and body timeouts in these cases


def client_cases(port: int) -> list[tuple[str, Callable[[], str | None]]]:
    """(name, check) pairs; a check returns None when the server behaved, else what went wrong."""
    def connect() -> socket.socket:
        return socket.create_connection((HOST, port), timeout=DEADLINE + 10)

    def idle_sockets() -> str | None:
        held = [connect() for _ in range(300)]
        try:
            time.sleep(0.3)
            status = health(port)
            return None if status == 200 else f"health answered {status} with 300 idle sockets open"
        finally:
            for s in held:
                s.close()

    def timed(send: Callable[[socket.socket], None], what: str) -> str | None:
        with connect() as sock:
            started = time.monotonic()
            send(sock)
            reply = _answer(sock)
            elapsed = time.monotonic() - started
        if elapsed > DEADLINE + 5:
            return f"{what}: held {elapsed:.1f} s"
        if reply and not reply.startswith(b"HTTP/1.1 408"):
            return f"{what}: answered {reply[:20]!r}"
        status = health(port)
        return None if status == 200 else f"health answered {status} after {what}"

    def slow_header() -> str | None:
        request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 300
        return timed(lambda s: _trickle(s, request), "headers a byte every 0.1 s")

    def slow_body() -> str | None:
        return timed(lambda s: (s.sendall(UPLOAD), _trickle(s, b"x" * 1000)), "a body a byte every 0.1 s")

    def silent() -> str | None:
        return timed(lambda s: None, "a socket that sends nothing")

    def cut_off() -> str | None:
        multipart = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nab'
        for body in (b"x" * 1000, multipart):
            kind = b"image/png" if body.startswith(b"x") else b"multipart/form-data; boundary=b"
            with connect() as sock:
                sock.sendall(UPLOAD.replace(b"image/png", kind) + body)
                time.sleep(0.2)
        time.sleep(0.3)
        status = health(port)
        return None if status == 200 else f"health answered {status} after uploads cut off"

    def held_slots() -> str | None:
        held = []
        try:
            for _ in range(80):  # more than the requests the server lets run at once
                s = connect()
                s.sendall(UPLOAD)
                held.append(s)
            time.sleep(0.3)
            status = health(port)
            return None if status == 200 else f"health answered {status} with 80 uploads stalled"
        finally:
            for s in held:
                s.close()

    def foreign_host() -> str | None:
        status = health(port, host="rebound.example")
        return None if status == 400 else f"Host rebound.example answered {status}"

    def head() -> str | None:
        status = health(port, method="HEAD")
        return None if status == 200 else f"HEAD /api/health answered {status}"

    def oversized() -> str | None:
        with connect() as sock:
            sock.sendall(UPLOAD.replace(b"100000", b"52428800"))
            reply = _answer(sock)
        return None if reply.startswith(b"HTTP/1.1 413") else f"50 MB Content-Length answered {reply[:20]!r}"

    return [("300 idle sockets", idle_sockets), ("a socket that sends nothing", silent),
            ("slow headers", slow_header), ("slow body", slow_body), ("uploads cut off", cut_off),
            ("80 stalled uploads", held_slots), ("a foreign Host", foreign_host), ("HEAD", head),
            ("a 50 MB Content-Length", oversized)]


def run_clients(run_dir: Path, work: Path, settings: Settings) -> list[Outcome]:
    family = "slow clients"
    stderr = work / "serve-stderr.txt"
    port = free_port()
    flags = ["--header-timeout", str(DEADLINE), "--body-timeout", str(DEADLINE),
             "--shutdown-timeout", str(DEADLINE)]
    proc = subprocess.Popen(digits_command("serve", str(run_dir), "--port", str(port), *flags),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr.open("w"),
                            env=settings.env)
    try:
        deadline = time.monotonic() + 60
        while health(port, timeout=1) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"digits serve did not come up: {stderr.read_text()[-200:]}"
                return [Outcome(family, "start-up", why)]
            time.sleep(0.2)
        outcomes = []
        for name, check in client_cases(port):
            try:
                outcomes.append(Outcome(family, name, check()))
            except OSError as exc:
                outcomes.append(Outcome(family, name, f"{type(exc).__name__}: {exc}"))
        with socket.create_connection((HOST, port), timeout=30) as sock:  # SIGTERM during an upload
            sock.sendall(UPLOAD + b"x" * 100)
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _answer(sock)
            try:
                proc.wait(timeout=DEADLINE + 15)
                problem = None
            except subprocess.TimeoutExpired:
                problem = f"still running {time.monotonic() - started:.0f} s after SIGTERM during an upload"
        outcomes.append(Outcome(family, "SIGTERM during an upload", problem))
        log = stderr.read_text()
        outcomes.append(Outcome(family, "no traceback on the server's stderr",
                                None if "Traceback" not in log else f"{log.count('Traceback')} tracebacks"))
        return outcomes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- kills -------------------------------------------------------------------------------

def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TEMPORARY.search(p.name))


def run_kills(work: Path, run_dir: Path, settings: Settings, kills: int, seed: int) -> list[Outcome]:
    """SIGKILL each writing command at seeded random moments, then check what it left and rerun."""
    family, rng = "kills", random.Random(seed)
    # Per command: how to run it in a case folder, how to rerun it (None: the same), what it writes.
    # score writes score.json beside a submission in a run directory.
    commands: dict[str, tuple[Callable[[Path], list[str]], Callable[[Path], list[str]] | None,
                              Callable[[Path], list[Path]]]] = {
        "data prepare": (lambda c: digits_command("data", "prepare", "--out", str(c / "data")),
                         lambda c: digits_command("data", "prepare", "--out", str(c / "data")),
                         lambda c: [c / "data" / n for n in ("train.csv", "test.csv", "solution.csv")]),
        "train": (lambda c: digits_command("train", "--train", str(FIXTURES / "train.csv"), "--model",
                                           "tutorial-mlp", "--epochs", "2", "--no-report", "-q",
                                           "--out", str(c / "trained")),
                  lambda c: digits_command("train", "--resume", str(c / "trained"), "-q"),
                  lambda c: [c / "trained" / n for n in ("model.json", "model.safetensors", "metrics.json")]),
        "predict": (lambda c: digits_command("predict", str(run_dir), "--test", str(FIXTURES / "test.csv"),
                                             "--out", str(c / "submission.csv")),
                    None, lambda c: [c / "submission.csv"]),
        "report": (lambda c: digits_command("report", str(c / "run"), "--out",
                                            str(c / "report" / "report.html")),
                   None, lambda c: [c / "report" / "report.html"]),
        "score": (lambda c: digits_command("score", str(c / "run" / "submission.csv"), "--solution",
                                           str(FIXTURES / "solution.csv")),
                  None, lambda c: [c / "run" / "score.json"]),
        "export": (lambda c: digits_command("export", str(c / "run"), "--out", str(c / "model.onnx")),
                   None, lambda c: [c / "model.onnx"]),
    }
    outcomes = []
    for name, (command, rerun, outputs) in commands.items():
        clean = work / "kills" / f"{name.replace(' ', '-')}-clean"
        _prepare_case(clean, run_dir)
        timing = run(command(clean), settings, clean)
        if timing.code != 0:
            why = f"exit {timing.code}: {timing.stderr[-200:]}"
            outcomes.append(Outcome(family, f"{name}: a clean run", why))
            continue
        for k in range(kills):
            case = work / "kills" / f"{name.replace(' ', '-')}-{k}"
            _prepare_case(case, run_dir)
            moment = rng.uniform(0.1, 1.0) * timing.seconds
            run(command(case), settings, case, kill_after=moment)
            # A SIGKILL runs no clean-up, so a temporary copy may stay until the rerun: right
            # after the kill only half-written outputs count; after the rerun, leftovers too.
            problem = _after_kill(case, outputs(case), leftovers_too=False)
            finished = problem is None and _after_kill(case, outputs(case), all_present=True) is None
            if problem is None and not finished:  # killed after its work was done: nothing to rerun
                again = run((rerun or command)(case), settings, case)
                if again.code != 0 and rerun is not None:  # killed before its first checkpoint
                    again = run(command(case), settings, case)
                if again.code != 0:
                    problem = f"the rerun exits {again.code}: {(again.stderr.splitlines() or [''])[-1][:120]}"
                else:
                    problem = _after_kill(case, outputs(case), all_present=True)
            case_name = f"{name}: SIGKILL at {moment:.2f} s of {timing.seconds:.2f}"
            outcomes.append(Outcome(family, case_name, problem))
    return outcomes


def _prepare_case(case: Path, run_dir: Path) -> None:
    case.mkdir(parents=True)
    shutil.copytree(run_dir, case / "run")
    shutil.copy(FIXTURES / "solution.csv", case / "run" / "submission.csv")  # a perfect submission to score


def _after_kill(case: Path, outputs: list[Path], all_present: bool = False,
                leftovers_too: bool = True) -> str | None:
    left = leftovers(case) if leftovers_too else []
    if left:
        return f"left {', '.join(left[:3])}"
    for path in outputs:
        if not path.exists():
            if all_present:
                return f"{path.relative_to(case)} missing after the rerun"
            continue
        problem = _complete(path)
        if problem:
            return f"{path.relative_to(case)}: {problem}"
    return None


def _complete(path: Path) -> str | None:
    """Why ``path`` is not a complete output, or None."""
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            json.loads(data)
        except ValueError:
            return "not complete JSON"
    elif path.suffix == ".csv":
        lines = data.decode("utf-8", "replace").splitlines()
        widths = {line.count(",") for line in lines}
        if not data.endswith(b"\n") or len(widths) != 1 or len(lines) < 2:
            return "a cut-off CSV"
    elif path.suffix == ".html" and b"</html>" not in data[-200:]:
        return "a cut-off HTML page"
    elif path.suffix in (".onnx", ".safetensors") and len(data) < 1000:
        return "a cut-off model file"
    return None


# --- the whole benchmark -----------------------------------------------------------------

def machine() -> str:
    """CPU model, cores, the instruction sets that matter here, versions (as speed.py prints)."""
    sys.path.insert(0, str(ROOT / "src"))
    from digits.runs import cpu_info

    model, flags = cpu_info()
    isa = ", ".join(f for f in ("avx2", "avx512f", "amx_bf16") if f in flags) or "no AVX2"
    return (f"{model}, {os.cpu_count()} cores ({isa}); {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def train_tiny_run(work: Path, settings: Settings) -> tuple[Path, Path | None]:
    """A tutorial-mlp run on the fixture, and a copy of a longer one killed after its first checkpoint."""
    run_dir = work / "run"
    ran = run(digits_command("train", "--train", str(FIXTURES / "train.csv"), "--model", "tutorial-mlp",
                             "--epochs", "1", "-q", "--out", str(run_dir)), settings, work)
    if ran.code != 0:
        raise SystemExit(f"could not train the run the benchmark needs: {ran.stderr[-300:]}")
    resumable = work / "resumable"
    proc = subprocess.Popen(digits_command("train", "--train", str(FIXTURES / "train.csv"), "--model",
                                           "tutorial-mlp", "--epochs", "200", "-q", "--out", str(resumable)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=settings.env)
    deadline = time.monotonic() + settings.timeout
    while not (resumable / "checkpoint" / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    shutil.copy(FIXTURES / "solution.csv", work / "good-submission.csv")
    return run_dir, resumable if (resumable / "checkpoint" / "state.json").exists() else None


def table(outcomes: list[Outcome]) -> str:
    families = list(dict.fromkeys(o.family for o in outcomes))
    lines = [f"{'family':<14} {'cases':>6} {'passed':>7} {'failed':>7}"]
    for family in families:
        mine = [o for o in outcomes if o.family == family]
        passed = sum(o.passed for o in mine)
        lines.append(f"{family:<14} {len(mine):>6} {passed:>7} {len(mine) - passed:>7}")
    total = sum(o.passed for o in outcomes)
    lines.append(f"{'all':<14} {len(outcomes):>6} {total:>7} {len(outcomes) - total:>7}")
    failed = [o for o in outcomes if not o.passed]
    if failed:
        lines.append("\nfailures:")
        lines += [f"  {o.family} / {o.case}: {o.problem}" for o in failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset of each family")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the outcomes here (atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--jobs", type=int, default=2, help="commands run at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a command may take")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address space each command may use")
    parser.add_argument("--families", nargs="+", default=["files", "runs", "clients", "kills"],
                        choices=["files", "runs", "clients", "kills"])
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")])),
           "DIGITS_MNIST_MIRRORS": ""}  # never the network: data prepare uses the cache or PyPI's copy
    settings = Settings(args.timeout, args.memory_gb, env)
    print(f"machine: {machine()}", flush=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="digits-hostile-") as tmp:
        work = Path(tmp)
        run_dir, resumable = train_tiny_run(work, settings)
        steps = {
            "files": lambda: run_refusals("bad files", bad_file_cases(work, run_dir, args.quick), work,
                                          settings, args.jobs),
            "runs": lambda: run_damaged(damaged_run_cases(work, run_dir, resumable, settings, args.quick),
                                        work, settings, args.jobs),
            "clients": lambda: run_clients(run_dir, work, settings),
            "kills": lambda: run_kills(work, run_dir, settings, 1 if args.quick else 3, args.seed),
        }
        for name in args.families:
            step_started = time.monotonic()
            outcomes += steps[name]()
            print(f"  {name}: done in {time.monotonic() - step_started:.0f} s", flush=True)
    print(table(outcomes))
    print(f"\n{len(outcomes)} cases in {time.monotonic() - started:.0f} s")
    if args.json:
        sys.path.insert(0, str(ROOT / "src"))
        from digits.jsonfile import write_json

        write_json(args.json, {"machine": machine(), "quick": args.quick, "seed": args.seed,
                               "outcomes": [asdict(o) for o in outcomes]})
    return 1 if any(not o.passed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
