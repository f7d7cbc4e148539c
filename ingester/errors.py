"""One exception tree for the whole tool; each class carries the exit code the CLI maps it to.

Exit codes (README.md, "Exit codes"): 0 success, 1 runtime failure, 2 invalid input, 3 AOI locked by another
run, 4 run finished with jobs FAILED or RETRY, 5 run finished what could run now and some jobs are deferred
(4 and 5 are not exceptions: the CLI decides from the run summary; 4 wins over 5).

The same classes say what a job that fails with them reports, in the workflow's words (`outcome`:
`temporary`, `deferred`, `fatal`, `error`); `ingester.failures.classify` is the one function that turns
any exception into an outcome (docs/workflow.md, "Which failure gives which outcome").
"""

from __future__ import annotations

from typing import Literal

Outcome = Literal["done", "temporary", "fatal", "error", "deferred"]
OUTCOMES: tuple[str, ...] = ("done", "temporary", "deferred", "fatal", "error")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INPUT = 2
EXIT_LOCKED = 3
EXIT_JOBS_FAILED = 4
EXIT_DEFERRED = 5


class IngesterError(Exception):
    """Base class: a runtime failure (exit 1) unless a subclass says otherwise."""

    exit_code = EXIT_FAILURE
    outcome: Outcome = "error"  # what a job failing with it reports (ingester.failures.classify)


class InputError(IngesterError):
    """Invalid user input: payload, scenes/tiles file, option. Nothing has been written. In a job (a
    scene name that cannot be stored, …) it never succeeds: `fatal`."""

    exit_code = EXIT_INPUT
    outcome: Outcome = "fatal"


class PayloadError(InputError):
    """The payload file is invalid."""


class ScenesFileError(InputError):
    """A scenes.json / tiles.json file is invalid."""


class GraphError(InputError):
    """A processing graph file is invalid (in a job: `error`, the graph can be fixed and the job retried)."""

    outcome: Outcome = "error"


class ConfigError(InputError):
    """Settings (environment, ingester.toml, options) are invalid (in a job: `error`, they can be fixed)."""

    outcome: Outcome = "error"


class LockedError(IngesterError):
    """Another run holds the AOI's lock."""

    exit_code = EXIT_LOCKED


class CatalogueError(IngesterError):
    """A catalogue search failed."""


class HTTPError(IngesterError):
    """An HTTP call failed after retries; `status` is the last HTTP status (None: no response)."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url


class ProviderError(IngesterError):
    """A download provider failed. `temporary` says whether trying again later may succeed (the
    provider chain retries it; a job ending with it reports `temporary`)."""

    temporary = False


class AuthError(ProviderError):
    """Credentials missing or refused."""


class NotFound(ProviderError):
    """The provider does not have the product: try the next provider."""


class RateLimited(ProviderError):
    """The provider asked to slow down (429 / quota)."""

    temporary = True
    outcome: Outcome = "temporary"


class Unavailable(ProviderError):
    """The provider is down, the product offline, or the link dropped: may pass."""

    temporary = True
    outcome: Outcome = "temporary"


class Deferred(ProviderError):
    """The product exists but cannot be had now (offline, being restored, ordered and not ready): the
    job is deferred until `retry_at` (epoch seconds), which counts neither as a failure nor a retry."""

    temporary = True
    outcome: Outcome = "deferred"

    def __init__(self, message: str, retry_at: float):
        super().__init__(message)
        self.retry_at = retry_at


class CredentialsRefused(AuthError):
    """The identity server refused the account itself (wrong password, locked or disabled account):
    every further login would be refused too and may lock the account, so all work of that service
    stops for the run (never a retry per scene)."""


class DownloadError(IngesterError):
    """A transfer could not complete or verify."""


class StorageError(IngesterError):
    """Reading or writing the storage failed."""


class ProcessingError(IngesterError):
    """A processing graph failed; `outcome` is `temporary`, `fatal` or `error` (docs/graphs.md, "Error
    classification"). The older word `permanent` is accepted for `error`; `kind` reads it back so."""

    def __init__(self, message: str, outcome: str = "error"):
        super().__init__(message)
        outcome = "error" if outcome == "permanent" else outcome
        if outcome not in ("temporary", "fatal", "error"):
            raise ValueError(f"ProcessingError outcome {outcome!r}: temporary, fatal or error")
        self.outcome = outcome  # type: ignore[assignment]

    @property
    def kind(self) -> str:
        return "permanent" if self.outcome == "error" else self.outcome


class StoreError(IngesterError):
    """The SQLite store refused an operation (inconsistent state, unknown id, ...)."""


class TilingError(IngesterError):
    """The tile inventory failed."""


class IngesterWarning(UserWarning):
    """Base class of the warnings the CLI shows (never silently swallowed)."""


class GeometryRepairedWarning(IngesterWarning):
    """An invalid AOI ring was repaired."""


class CatalogueWarning(IngesterWarning):
    """A catalogue answer had something odd (no footprint, offline product, …)."""


class CatalogueFilterWarning(CatalogueWarning):
    """The catalogue returned a product that a payload filter excludes (dropped on the client)."""


class OfflineProductWarning(CatalogueWarning):
    """A product is offline (long-term archive): it is listed, flagged `metadata.online = false`."""


class ScenesFileWarning(IngesterWarning):
    """A scenes/tiles file had a forgivable slip (a trailing comma left by deleting a line)."""


class ReprocessedCopyWarning(IngesterWarning):
    """Another processing of an acquisition already ingested (or in the same input) was skipped."""


class TilingWarning(IngesterWarning):
    """The tile inventory skipped or doubted something."""
