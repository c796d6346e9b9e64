"""A real ``digits serve`` against idle, slow, vanishing and misaddressed clients on real sockets,
and its API docs in a real browser (Debian's headless chromium; skipped where it is missing).

One server with short deadlines (1 s for headers and for bodies, 40 connections) answers
most tests; the shutdown and --allowed-host tests start their own.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import chromium, needs_chromium

from digits.serve.settings import ConnectionLimits

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(port: int, host: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health",
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _start(run_dir: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    command = [sys.executable, "-m", "digits.cli", "serve", str(run_dir), "--port", str(port), *flags]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"digits serve exited: {log.read_text()}")
        try:
            if _health(port) == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("digits serve did not answer within 60 s")


@pytest.fixture(scope="module")
def served(run_dir, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("served")
    access, stderr = folder / "access.jsonl", folder / "stderr.txt"
    proc, port = _start(run_dir, stderr, "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout",
                        str(BODY_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
                        "--access-log", str(access))
    yield {"port": port, "access": access, "stderr": stderr}
    proc.terminate()
    proc.wait(timeout=20)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _trickle(sock: socket.socket, data: bytes, every: float = 0.1) -> None:
    """Send ``data`` a byte at a time until it is all sent or the server closes the connection."""
    for byte in data:
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reply = b""
    try:
        while chunk := sock.recv(4096):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def _log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hundreds_of_idle_sockets_never_lock_out_the_health_check(served):
    port = served["port"]
    idle = [_connect(port) for _ in range(300)]  # 260 idle sockets made main answer 503 to everything
    try:
        time.sleep(0.2)
        assert _health(port) == 200
        assert _health(port) == 200
        # Past the bound, the longest-waiting idle sockets were closed to make room.
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


def test_a_socket_that_sends_nothing_is_closed_silently_after_the_header_timeout(served):
    with _connect(served["port"]) as sock:
        started = time.monotonic()
        reply = _answer(sock)
        elapsed = time.monotonic() - started
    assert reply == b""
    # The server's clock starts at accept, a little before this test's: allow for that.
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + 5, elapsed


def test_headers_sent_a_byte_at_a_time_are_answered_408_and_closed_at_the_header_timeout(served):
    port = served["port"]
    with _connect(port) as sock:
        started = time.monotonic()
        _trickle(sock, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200)
        reply = _answer(sock)
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT + 5
    assert _health(port) == 200


def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_closed_at_the_body_timeout(served):
    port = served["port"]
    with _connect(port) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        started = time.monotonic()
        _trickle(sock, b"x" * 1000)
        reply = _answer(sock)
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 5
    assert _health(port) == 200
    assert any(e["path"] == "/api/predict" and e["status"] == 408 for e in _log_lines(served["access"]))


def test_a_slow_but_steady_upload_earns_more_time_than_the_body_timeout(served):
    # 10 kB a second earns a second a 10 kB: 30 kB in 2.4 s outlives the 1 s deadline.
    with _connect(served["port"]) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 30000\r\nConnection: close\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"\0" * 10_000)
            time.sleep(0.8)
        reply = _answer(sock)
    assert reply.startswith(b"HTTP/1.1 415 ")  # the app read it all, and it is not an image


def test_health_is_answered_while_every_request_slot_is_held_by_slow_uploads(served):
    port = served["port"]
    slow = []
    try:
        # Each sends its headers, then holds its body back.
        for _ in range(ConnectionLimits(max_connections=MAX_CONNECTIONS).max_requests):
            sock = _connect(port)
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000\r\n\r\n")
            slow.append(sock)
        time.sleep(0.3)
        with _connect(port) as one_more:
            one_more.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                             b"Content-Length: 1000\r\n\r\n")
            assert _answer(one_more).startswith(b"HTTP/1.1 503 ")
        assert _health(port) == 200
    finally:
        for sock in slow:
            sock.close()


def test_a_client_gone_mid_upload_is_one_access_log_line_and_no_traceback(served):
    port = served["port"]
    multipart = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nab'
    for body_start in (b"x" * 1000, multipart):
        kind = b"image/png" if body_start.startswith(b"x") else b"multipart/form-data; boundary=xx"
        with _connect(port) as sock:
            sock.sendall(b"POST /api/predict?gone=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + kind +
                         b"\r\nContent-Length: 100000\r\n\r\n" + body_start)
            time.sleep(0.3)
    time.sleep(0.5)
    assert _health(port) == 200
    assert "Traceback" not in served["stderr"].read_text()
    gone = [e for e in _log_lines(served["access"]) if e["query"] == "gone=1"]
    assert [e["status"] for e in gone] == [499, 499]


def test_bound_to_loopback_only_loopback_host_names_are_answered(served):
    port = served["port"]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert _health(port, host) == 200, host
    for host in ("rebound.example", f"rebound.example:{port}", "127.0.0.1.nip.example", "[::2]"):
        assert _health(port, host) == 400, host
    with _connect(port) as sock:
        sock.sendall(b"GET /api/model HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
        reply = _answer(sock).decode()
    assert reply.startswith("HTTP/1.1 400 ")
    assert "attacker.example" in reply and "--allowed-host" in reply
    assert "x-content-type-options: nosniff" in reply.lower()


def test_head_is_answered_by_the_real_server_without_a_body(served):
    with _connect(served["port"]) as sock:
        sock.sendall(b"HEAD /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = _answer(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: " in head.lower() and body == b""


def test_allowed_host_adds_a_name_and_a_star_allows_any(run_dir, tmp_path):
    proc, port = _start(run_dir, tmp_path / "stderr.txt", "--allowed-host", "digits.example")
    try:
        assert _health(port, "digits.example:8000") == 200
        assert _health(port, "localhost") == 200
        assert _health(port, "other.example") == 400
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_sigterm_ends_a_stalled_upload_at_the_shutdown_timeout(run_dir, tmp_path):
    proc, port = _start(run_dir, tmp_path / "stderr.txt", "--shutdown-timeout", "1", "--body-timeout", "120")
    try:
        with _connect(port) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"x" * 100)
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            reply = _answer(sock)
            proc.wait(timeout=30)  # main waited for the upload for as long as the client held it
            elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert 1.0 <= elapsed < 15
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()


@needs_chromium
def test_the_api_docs_render_in_a_browser_from_the_server_alone_under_its_csp(served, tmp_path):
    base = f"http://127.0.0.1:{served['port']}"
    with chromium(tmp_path / "chromium-profile") as browser:
        for path, rendered in (("/docs", ".opblock"), ("/redoc", "[data-section-id]")):
            page = browser.new_page()
            loaded: list[str] = []
            page.on("requestfinished", lambda request, loaded=loaded: loaded.append(request.url))
            page.add_init_script("window.violations = []; document.addEventListener("
                                 "'securitypolicyviolation', "
                                 "e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI))")
            page.goto(base + path)
            page.wait_for_selector(rendered, timeout=20_000)
            assert page.locator(rendered).count() >= 3, path  # health, model, predict
            assert loaded and all(url.startswith((base + "/", "blob:")) for url in loaded), loaded
            # ReDoc's "by Redocly" badge asks for its logo from Redocly's CDN; the policy stops it
            # and the badge hides the image. Nothing else may be blocked: no script, no style.
            blocked = page.evaluate("window.violations")
            assert all(v.startswith("img-src https://cdn.redoc.ly/") for v in blocked), blocked
            page.close()
