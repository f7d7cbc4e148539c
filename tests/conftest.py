"""Shared fixtures. Feature-specific fixtures live in the test modules or in tests/fakes/."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "data"  # real data carried with the project (see tests/data/README.md)

# Every remote endpoint points at a closed local port unless a test sets its fake: no test can
# reach a real service by forgetting to configure one.
_CLOSED = "http://127.0.0.1:9"
_SAFE_ENV = {
    "INGESTER_CDSE_CATALOGUE_URL": f"{_CLOSED}/odata/v1",
    "INGESTER_CDSE_DOWNLOAD_URL": f"{_CLOSED}/odata/v1",
    "INGESTER_CDSE_TOKEN_URL": f"{_CLOSED}/token",
    "INGESTER_ASF_URL": _CLOSED,
    "INGESTER_ONEATLAS_AUTH_URL": f"{_CLOSED}/auth/realms/IDP/protocol/openid-connect/token",
    "INGESTER_ONEATLAS_SEARCH_URL": f"{_CLOSED}/api/v2/opensearch",
    "INGESTER_ONEATLAS_ORDER_URL": _CLOSED,
    "INGESTER_HTTP_RETRIES": "2",
    "INGESTER_HTTP_BACKOFF": "0.01",
}


def _loopback(address: object) -> bool:
    """Whether a socket address stays on this machine: a Unix socket or a loopback IP (or `localhost`)."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths, abstract sockets
    host = str(address[0]).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: somewhere else


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch):
    """Connections leave this machine in no test: connecting elsewhere than a loopback address is refused
    as a closed port would refuse it (the tool's own handling of a refused connection applies)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if not _loopback(address):
            raise ConnectionRefusedError(111, f"Connection refused: tests do not reach real hosts ({address!r})")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _loopback(address):
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No INGESTER_* leaks in from the developer's shell; HOME has no .netrc; cwd is tmp_path."""
    for key in list(os.environ):
        if key.startswith("INGESTER_") or key.startswith("AWS_"):
            monkeypatch.delenv(key, raising=False)
    for key, value in _SAFE_ENV.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def testdata() -> Path:
    """The real test data carried in tests/data (origins in tests/data/README.md)."""
    return TESTDATA


@pytest.fixture
def repo() -> Path:
    return REPO


class Cli:
    """Runs `ingester …` in-process (fast) and returns (exit code, stdout, stderr)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None):
        from ingester.cli import app

        result = self.runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `python -m ingester` subprocesses that import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


PYTHON = sys.executable
