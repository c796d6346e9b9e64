"""Load test of ``digits serve``: throughput and p50/p99 latency for 1 and 32 concurrent clients.

Talks to 127.0.0.1 only (there is no option for any other address), and is bounded
both in time (--seconds per level, at most 60) and in count (--max-requests per level).
It starts its own server on a free loopback port unless --port names one already running.

    python benchmarks/load.py RUN_DIR [--runtime torch|onnx] [--seconds 10] [--json out.json]

Each client keeps one HTTP/1.1 connection open and sends requests back to back; a
request is an error unless it is answered 200 with a label.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HOST = "127.0.0.1"  # loopback only, by design
MAX_SECONDS = 60
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "test.csv"


@dataclass(frozen=True)
class Payload:
    name: str
    bodies: list[bytes]
    content_type: str


def payloads(count: int = 64) -> list[Payload]:
    """Real digits from the fixture as JSON pixels, and as 280x280 PNG drawings like the page sends."""
    rows = np.loadtxt(FIXTURE, delimiter=",", skiprows=1, dtype=np.uint8, max_rows=count).reshape(-1, 28, 28)
    as_json = [json.dumps({"pixels": d.tolist()}).encode() for d in rows]
    as_png = []
    for d in rows:
        canvas = Image.fromarray(255 - d).resize((280, 280), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        canvas.save(out, "PNG")
        as_png.append(out.getvalue())
    return [Payload("json 28x28", as_json, "application/json"), Payload("png 280x280", as_png, "image/png")]


def _client(port: int, payload: Payload, stop_at: float, budget: list[int], lock: threading.Lock,
            latencies: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    i = 0
    while time.perf_counter() < stop_at:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body = payload.bodies[i % len(payload.bodies)]
        i += 1
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/predict", body, {"Content-Type": payload.content_type})
            answer = conn.getresponse()
            data = answer.read()
            ok = answer.status == 200 and json.loads(data).get("digit_found") is True
        except (OSError, http.client.HTTPException, ValueError) as exc:
            ok, data = False, repr(exc).encode()
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            if not ok:
                errors.append(data[:200].decode("utf-8", "replace"))
    conn.close()


def run_level(port: int, payload: Payload, clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` threads sending ``payload`` for ``seconds`` or ``max_requests``, whichever ends first."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests]
    started = time.perf_counter()
    threads = [threading.Thread(target=_client, args=(port, payload, started + seconds, budget, lock,
                                                      latencies, errors)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"payload": payload.name, "clients": clients, "requests": len(latencies), "errors": len(errors),
            "seconds": round(wall, 2), "throughput_rps": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "first_error": errors[0] if errors else None}


def start_server(run_dir: str, runtime: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "digits.cli", "serve", run_dir, "--host", HOST,
                             "--port", str(port), "--runtime", runtime])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=1)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not come up within 60 s")


def machine() -> str:
    from digits.hardware import hardware  # imports torch: only when describing the machine

    cpu = hardware("cpu").describe()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="run to serve (not needed with --port)")
    parser.add_argument("--port", type=int, help="a server already running on 127.0.0.1:PORT")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help=f"per level, at most {MAX_SECONDS}")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per level")
    parser.add_argument("--json", type=Path, help="also write the results here (atomically)")
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)
    if args.port is None and args.run_dir is None:
        parser.error("give RUN_DIR, or --port of a running server")
    proc, port = (None, args.port) if args.port else start_server(args.run_dir, args.runtime)
    try:
        results = []
        for payload in payloads():
            run_level(port, payload, 4, 1.0, 200)  # warm-up: connections, caches, thread pool
            for clients in args.clients:
                result = run_level(port, payload, clients, seconds, args.max_requests)
                results.append(result)
                print(f"{payload.name:<12} {clients:>3} clients: {result['throughput_rps']:>7.1f} req/s, "
                      f"p50 {result['p50_ms']:>7.2f} ms, p99 {result['p99_ms']:>7.2f} ms, "
                      f"{result['requests']} requests, {result['errors']} errors", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    report = {"machine": machine(), "runtime": args.runtime, "seconds_per_level": seconds, "results": results}
    if args.json:
        from digits.jsonfile import write_json

        write_json(args.json, report)
    if any(r["errors"] for r in results):
        raise SystemExit("errors under load: " + str([r["first_error"] for r in results if r["errors"]][0]))


if __name__ == "__main__":
    main()
