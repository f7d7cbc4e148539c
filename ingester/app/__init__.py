"""The application layer: what each command does, as calls that return typed reports which the
command line only renders (text or `--json`).

- `AoiSession` (`session`): one AOI of the store for a `with` block; the one place that opens the
  store for a command that changes it (never creating it before the input is validated) and holds
  the AOI's lock; `ingest`, `run`, `retry`, `fail`, `refresh`, `remove`, `verify`, `tiles`.
- `reads`: the read-only commands (the store opened read-only, never created, listings streamed).
- `reports`: the reports.
- `config_report`: `ingester config` (every setting, its value and where it comes from).

Nothing here is imported when the command line starts: each command imports what it calls.
"""

from ingester.app.reports import (
    CheckReport,
    DryRunReport,
    FailReport,
    History,
    IngestReport,
    OrderApproval,
    RefreshReport,
    RemoveReport,
    RetryReport,
    TilesReport,
    VerifyReport,
)
from ingester.app.session import AoiSession, add_layer, check_download_settings, resolve_target

__all__ = [
    "AoiSession", "CheckReport", "DryRunReport", "FailReport", "History", "IngestReport", "OrderApproval",
    "RefreshReport",
    "RemoveReport", "RetryReport", "TilesReport", "VerifyReport", "add_layer", "check_download_settings",
    "resolve_target",
]
