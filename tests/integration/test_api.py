"""The retry policy of annotation.api.request against a real local HTTP server that fails on purpose."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from annotation.api import AnnotationSyncError, Backoff, request, request_json

FAST = Backoff(attempts=4, base_s=0.01, cap_s=0.02)


class _Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        self.hits[(self.command, self.path)] += 1
        n = self.hits[(self.command, self.path)]
        if self.path == "/flaky":  # unavailable twice, then fine
            self._answer(503 if n <= 2 else 200, {"n": n})
        elif self.path == "/gateway":
            self._answer(502, {"detail": "bad gateway"})
        elif self.path == "/missing":
            self._answer(404, {"detail": "Record not found"})
        else:
            self._answer(200, {"n": n})

    do_GET = do_POST = do_PUT = _route

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_unavailable_server_is_retried_until_it_answers(server: str) -> None:
    with httpx.Client(base_url=server) as http:
        assert request_json(http, "GET", "/flaky", what="probe", backoff=FAST) == {"n": 3}
        assert request_json(http, "POST", "/flaky", what="create", backoff=FAST) == {
            "n": 3
        }  # 503: unprocessed
    assert _Handler.hits[("GET", "/flaky")] == 3


def test_client_errors_are_final_with_the_servers_detail(server: str) -> None:
    with httpx.Client(base_url=server) as http, pytest.raises(AnnotationSyncError) as err:
        request(http, "GET", "/missing", what="get record", backoff=FAST)
    assert err.value.status_code == 404
    assert str(err.value) == "get record: Argilla answered 404 to GET /missing: Record not found"
    assert _Handler.hits[("GET", "/missing")] == 1


def test_a_create_that_may_have_been_processed_is_not_sent_twice(server: str) -> None:
    with httpx.Client(base_url=server) as http:
        with pytest.raises(AnnotationSyncError, match="answered 502"):
            request(http, "POST", "/gateway", what="create user", backoff=FAST)
        assert _Handler.hits[("POST", "/gateway")] == 1
        with pytest.raises(AnnotationSyncError, match="failed after 4 attempt"):
            request(http, "PUT", "/gateway", what="upsert", backoff=FAST)  # idempotent: retried
        assert _Handler.hits[("PUT", "/gateway")] == 4


def test_refused_connections_are_retried_then_chained() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http, pytest.raises(AnnotationSyncError) as err:
        request(http, "POST", "/api/v1/users", what="create user", backoff=FAST)
    assert "failed after 4 attempt(s)" in str(err.value)
    assert isinstance(err.value.__cause__, httpx.ConnectError)
    assert err.value.status_code is None
