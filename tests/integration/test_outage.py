"""A PostgreSQL outage under `pvar-loop run` (issue 25: 20 s wrote 3,327 lines) is said once when it starts and
once when it ends; the jobs back off meanwhile and the scheduler goes on afterwards. The outage is real: the
scheduler reaches the session's PostgreSQL through a TCP relay that the test takes away and brings back."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.round_project import make_project

pytestmark = pytest.mark.postgres


class Relay:
    """127.0.0.1:port -> upstream, byte for byte; stop() refuses new connections and cuts the open ones."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept() still blocked on it
        server.close()
        with self._lock:
            for s in self._open:  # shutdown wakes the pumps blocked in recv; close alone would not
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _wait_for(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert text in log.read_text(), log.read_text()


def test_a_postgres_outage_is_said_once_and_the_scheduler_goes_on(tmp_path, tiny_models, postgres_url):
    url = make_url(postgres_url)
    relay = Relay((url.host, url.port))
    relay.start()
    through_relay = url.set(port=relay.port).render_as_string(hide_password=False)
    project = make_project(tmp_path, tiny_models, database_url=through_relay, ingest=False)
    assert project.cli("db", "upgrade").returncode == 0
    assert project.cli("budget", "set", "0").returncode == 0  # an idle scheduler: its ticks only read
    log = tmp_path / "run.log"
    proc = project.popen("run", log=log)
    try:
        _wait_for(log, "new rounds are paused", 120)
        before = len(log.read_text().splitlines())
        relay.stop()
        time.sleep(10)  # five ticks, ten lease heartbeats, a job-store poll
        relay.start()
        _wait_for(log, "database reachable again", 60)
        time.sleep(3)  # ticks run again, quietly
        assert proc.poll() is None, log.read_text()  # still driving: the lease survived
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        relay.stop()
    during = log.read_text().splitlines()[before:]
    assert "Traceback" not in "\n".join(during), "\n".join(during)
    said = [line for line in during if "stopping scheduler" not in line]
    assert len(said) == 2, "\n".join(during)  # down, back
    assert "database unreachable" in said[0] and "database reachable again after" in said[1]
