"""The HTTP clients of one command or run, passed to whatever needs them (no process-wide registry).

`Clients` holds one `Service` per remote service and configuration (one session, one connection pool,
reused by every call of the command: catalogue checks, downloads, annotation fetches) and one
`TokenManager` per account (one login per command or run: the pre-flight check, the tiling step and the
coordinator's token source share it). In a worker process, a job's `Clients` also hold the tokens the
coordinator handed with the job (`JobTokens`): providers use them instead of a login.

Build one per command (`with Clients() as clients:`), or per job in a worker; closing it closes the
sessions. Nothing of it outlives its owner, so tests need no reset between them. A worker process holds
one `Clients` for its life and makes each job's from it (`Clients(tokens, parent=process_clients)`): the
job's sessions carry the job's tokens and close with the job, while what is learnt about a server
(`lasting`, e.g. which auth scheme OneAtlas's download takes) serves the process's later jobs too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from ingester.http.tokens import HandedToken, JobTokens, TokenManager


class Clients:
    """Sessions and token managers of one command, run or job (thread-safe)."""

    def __init__(self, job_tokens: JobTokens | None = None, *, parent: Clients | None = None):
        self.job_tokens = job_tokens
        self.parent = parent
        self._lasting: dict[Hashable, Any] = {}
        self._services: dict[Hashable, Any] = {}
        self._managers: dict[Hashable, Any] = {}  # token managers: TokenManager, or another login
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Clients({len(self._services)} service(s), {len(self._managers)} login(s), {self.job_tokens!r})"

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def service(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The one `Service` for `key` (built by `make` on first use): one session and connection pool per
        remote service and configuration, shared by every user of these clients. `make` runs under the
        clients' lock: it must not call them back."""
        with self._lock:
            service = self._services.get(key)
            if service is None:
                service = self._services[key] = make()
            return service

    def lasting(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The one object for `key` (made by `make` on first use) kept by the outermost clients (a worker
        process's, across its jobs; else these): what is learnt about a server, not about a job's token.
        Never a session or a secret."""
        if self.parent is not None:
            return self.parent.lasting(key, make)
        with self._lock:
            value = self._lasting.get(key)
            if value is None:
                value = self._lasting[key] = make()
            return value

    def login(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The one token manager for `key` (an account at an endpoint; made by `make` on first use): one
        login for everything that uses these clients. It must have a `session` (closed with the clients)."""
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = make()
            return manager

    def token_manager(self, token_url: str, username: str, password: str, *, client_id: str = "cdse-public",
                      timeout: float = 30.0) -> TokenManager:
        """The one token manager for an account at a token endpoint (made on first use): one login."""
        key = (token_url, username, client_id)
        with self._lock:
            manager = self._managers.get(key)
            if manager is None or manager._password != password:
                manager = TokenManager(token_url, username, password, client_id, timeout=timeout)
                self._managers[key] = manager
            return manager

    def add_token_manager(self, manager: TokenManager) -> TokenManager:
        """Use `manager` for its account (e.g. one with another clock or margin); returns it."""
        with self._lock:
            self._managers[(manager.token_url, manager._username, manager.client_id)] = manager
        return manager

    def handed(self, service: str) -> HandedToken | None:
        """The token holder of `service` handed with the current job (None outside a job)."""
        return self.job_tokens.holder(service) if self.job_tokens is not None else None

    def carries(self, service: str) -> bool:
        """Whether the job was handed a token for `service` (its coordinator holds an account)."""
        return self.job_tokens is not None and self.job_tokens.carries(service)

    def close(self) -> None:
        """Close and forget every session (services and token managers)."""
        with self._lock:
            services, managers = list(self._services.values()), list(self._managers.values())
            self._services.clear()
            self._managers.clear()
            self._lasting.clear()
        for service in services:
            service.session.close()
        for manager in managers:
            manager.session.close()
