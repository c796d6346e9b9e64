"""What every answer carries, and the app's own guards, through FastAPI's test client:
security headers, HEAD, the offline API docs, the favicon, Host checking, the access log."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from digits.cli import main
from digits.serve.accesslog import open_access_log
from digits.serve.app import create_app
from digits.serve.middleware import host_name
from digits.serve.reader import DigitReader
from digits.serve.server import answered_hosts


@pytest.fixture(scope="module")
def reader(run_dir) -> DigitReader:
    return DigitReader.open(run_dir, "torch")


@pytest.fixture(scope="module")
def client(reader) -> TestClient:
    with TestClient(create_app(reader)) as client:
        yield client


class _References(HTMLParser):
    """Every src= and href= of a page, and the tags they are on."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [(tag, value) for name, value in attrs if name in ("src", "href", "spec-url") and value]


def _references(html: str) -> list[tuple[str, str]]:
    parser = _References()
    parser.feed(html)
    return parser.found


def test_every_answer_carries_a_csp_and_the_hardening_headers(client):
    answers = [client.get("/"), client.get("/api/health"), client.get("/static/app.js"), client.get("/docs"),
               client.get("/nowhere"), client.post("/api/predict", content=b"x" * 100,
                                                    headers={"content-type": "image/png"}),
               client.put("/api/health"), client.post("/api/predict", content=b"x", headers={
                   "content-type": "image/png", "content-length": str(11 * 2**20)})]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404, 415, 405, 413]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"


def test_head_is_answered_wherever_get_is_and_nowhere_else(client):
    for path in ("/", "/api/health", "/api/model", "/static/app.css", "/docs", "/redoc", "/openapi.json",
                 "/favicon.ico"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert int(head.headers["content-length"]) == len(got.content)
    assert client.head("/api/predict").status_code == 405  # POST only: HEAD is refused as GET is
    assert client.get("/api/predict").status_code == 405


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_and_every_asset_they_reference_load_from_the_server_itself(client, path):
    page = client.get(path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no Google Fonts
    references = _references(page.text)
    assert {tag for tag, _ in references} >= {"script", "link"}
    for tag, url in references:
        assert url.startswith("/") and not url.startswith("//"), (tag, url)
        assert client.get(url).status_code == 200, url
    assert "<script>" not in page.text  # no inline script: the policy forbids them


def test_the_favicon_is_served(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")


@pytest.mark.parametrize(("header", "name"), [
    ("localhost", "localhost"), ("LocalHost:8000", "localhost"), ("127.0.0.1:1", "127.0.0.1"),
    ("[::1]:8000", "[::1]"), ("[::1]", "[::1]"), ("localhost.", "localhost"),
    ("evil.example:80:80", None), ("localhost:http", None), ("", None)])
def test_host_headers_are_read_as_a_name_and_an_optional_port(header, name):
    assert host_name(header) == name


def test_which_host_names_are_answered_depends_on_the_address_bound():
    assert answered_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert answered_hosts("::1") == answered_hosts("localhost") == answered_hosts("127.0.0.2")
    assert answered_hosts("127.0.0.1", ["digits.example"])[-1] == "digits.example"
    assert answered_hosts("127.0.0.1", ["*"]) is None
    assert answered_hosts("0.0.0.0") is None  # opened to the network: any name, unless told
    assert answered_hosts("0.0.0.0", ["digits.example"]) == ["localhost", "127.0.0.1", "[::1]",
                                                             "digits.example"]


def test_a_foreign_host_is_told_which_names_are_answered(reader):
    with TestClient(create_app(reader, allowed_hosts=answered_hosts("127.0.0.1")),
                    base_url="http://rebound.example") as client:
        answer = client.get("/api/model")
        assert answer.status_code == 400
        assert answer.json()["detail"] == (
            "Host 'rebound.example' is not a name this server answers to (expected one of localhost, "
            "127.0.0.1, [::1], with any port; add names with --allowed-host)")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200


def test_the_json_access_log_has_one_object_per_request(reader, tmp_path):
    path = tmp_path / "access.jsonl"
    with TestClient(create_app(reader, access_log=open_access_log(path))) as client:
        client.get("/api/health?probe=1", headers={"user-agent": "probe/1.0\nforged line"})
        client.head("/")
        client.post("/api/predict", content=b"not an image", headers={"content-type": "image/png"})
    lines = path.read_text().splitlines()
    assert len(lines) == 3  # a newline in a header cannot forge a line
    health, head, predict = (json.loads(line) for line in lines)
    assert health["method"] == "GET" and health["path"] == "/api/health" and health["query"] == "probe=1"
    assert health["status"] == 200 and health["bytes"] > 0 and health["duration_ms"] >= 0
    assert health["user_agent"] == "probe/1.0\nforged line"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", health["time"])
    assert set(health) == {"time", "client", "method", "path", "query", "http_version", "status", "bytes",
                           "duration_ms", "host", "user_agent", "referer"}
    assert head["method"] == "HEAD" and head["status"] == 200 and head["bytes"] == 0
    assert predict["method"] == "POST" and predict["status"] == 415


def test_the_text_access_log_is_the_combined_log_format(reader, tmp_path):
    path = tmp_path / "access.log"
    with TestClient(create_app(reader, access_log=open_access_log(path), access_log_format="text")) as client:
        client.get('/api/health?q="x"', headers={"user-agent": 'say "hi"', "referer": "http://localhost/"})
    line = path.read_text()
    combined = (r'\S+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                r'"GET /api/health\?q=%22x%22 HTTP/1\.1" 200 \d+ "http://localhost/" "say \\x22hi\\x22"\n')
    assert re.fullmatch(combined, line), line


def test_an_access_log_that_cannot_be_opened_is_one_line_and_exit_status_2(run_dir, tmp_path, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", str(run_dir), "--port", str(port), "--access-log", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"digits: error: --access-log {tmp_path}: cannot open it for appending")
