"""Fixtures: real ``sluice serve`` processes on free ports with temporary data directories.

The binary is ``$SLUICE_BIN``, else ``<repo>/target/release/sluice``, else
``<repo>/target/debug/sluice``; without one the session fails (no test is skipped). Every
server is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional

import httpx
import pytest

import sluice

REPO = Path(__file__).resolve().parents[3]

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
WRITER_TOKEN = "writer-token-0123456789abcdef"
TOKENS_JSON = json.dumps(
    {
        "admin": ADMIN_TOKEN,
        "reader": {"token": READER_TOKEN, "roles": {"*": "reader"}},
        "writer": {"token": WRITER_TOKEN, "roles": {"*": "writer"}},
    }
)


def sluice_bin() -> str:
    env = os.environ.get("SLUICE_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError(f"SLUICE_BIN={env} is not an executable file")
        return env
    for p in (REPO / "target" / "release" / "sluice", REPO / "target" / "debug" / "sluice"):
        if os.access(p, os.X_OK):
            return str(p)
    raise RuntimeError(
        "no sluice binary: set SLUICE_BIN or build one (cargo build --release -p sluice) "
        f"so that {REPO}/target/release/sluice or target/debug/sluice exists"
    )


class Server:
    """One ``sluice serve`` process."""

    def __init__(self, name: str, env: Optional[Dict[str, str]] = None, args: Optional[list] = None) -> None:
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"sluice-py-{name}-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.env = dict(env or {})
        self.args = list(args or [])
        self.proc: Optional[subprocess.Popen] = None
        self.http_addr = ""
        self.wire_addr = ""

    @property
    def url(self) -> str:
        return "http://" + self.http_addr

    @property
    def wire_host_port(self):
        host, port = self.wire_addr.rsplit(":", 1)
        return host, int(port)

    def start(self, timeout: float = 60.0) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(self.env)
        env.setdefault("SLUICE_LOG_LEVEL", "warn")
        cmd = [
            sluice_bin(), "serve", "--data-dir", self.data,
            "--http-addr", "127.0.0.1:0", "--wire-addr", "127.0.0.1:0", *self.args,
        ]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        info = os.path.join(self.data, "server.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                with open(info) as f:
                    d = json.load(f)
                if d.get("pid") == self.proc.pid:
                    self.http_addr, self.wire_addr = d["http_addr"], d["wire_addr"]
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"sluice serve did not write server.json in {timeout}s: {self.tail()}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sluice serve not ready in {timeout}s: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        try:
            self.log.close()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, token: Optional[str] = None, **kw) -> sluice.Client:
        return sluice.Client(self.url, token, wire_address=self.wire_addr, **kw)

    def async_client(self, token: Optional[str] = None, **kw) -> sluice.AsyncClient:
        return sluice.AsyncClient(self.url, token, wire_address=self.wire_addr, **kw)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A dev-mode server (no credentials)."""
    s = Server("dev").start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[Server]:
    """A server with bearer tokens: admin, reader (``*``: reader), writer (``*``: writer)."""
    s = Server("auth", env={"SLUICE_BEARER_TOKENS_JSON": TOKENS_JSON}).start()
    yield s
    s.stop()


# A server whose auto-buffers refuse writes quickly: tiny memory limits, flushes by age only.
FULL_ENV = {
    "SLUICE_FEATURES_TS_AUTO_BUFFER_MAX_POINTS_PER_BUFFER": "10000000",
    "SLUICE_FEATURES_TS_AUTO_BUFFER_MAX_BUFFER_BYTES": "20000",
    "SLUICE_FEATURES_TS_AUTO_BUFFER_OVERFLOW_BUFFER_BYTES": "40000",
    "SLUICE_FEATURES_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS": "400",
    "SLUICE_FEATURES_VECTOR_AUTO_BUFFER_MAX_VECTORS_PER_BUFFER": "10000000",
    "SLUICE_FEATURES_VECTOR_AUTO_BUFFER_MAX_BUFFER_BYTES": "20000",
    "SLUICE_FEATURES_VECTOR_AUTO_BUFFER_OVERFLOW_BUFFER_BYTES": "40000",
    "SLUICE_FEATURES_VECTOR_AUTO_BUFFER_FLUSH_INTERVAL_MS": "400",
}


@pytest.fixture(scope="session")
def full_server() -> Iterator[Server]:
    """A server whose buffers overflow (503 / wire 0x04) under a burst."""
    s = Server("full", env=FULL_ENV).start()
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[sluice.Client]:
    c = server.client()
    yield c
    c.close()


def uniq(prefix: str = "m") -> str:
    """A name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def settle(fn, ok, timeout: float = 5.0):
    """Calls ``fn`` until ``ok(result)`` or ``timeout`` seconds; returns the last result.

    Server bug (reported with the client): a query made right after a write was acknowledged
    (even at ``fsync``) sometimes misses a few thousand points while the auto-buffer flushes
    (read-your-writes is documented); they appear within about a second. Tests that verify
    large writes by reading them back use this so that they test the client, and
    ``test_read_your_writes_server_bug`` shows the bug itself.
    """
    deadline = time.monotonic() + timeout
    r = fn()
    while not ok(r) and time.monotonic() < deadline:
        time.sleep(0.1)
        r = fn()
    return r
