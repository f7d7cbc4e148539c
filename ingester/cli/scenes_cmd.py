"""scenes_cmd commands (registered on the shared Typer app)."""

from __future__ import annotations

from ingester.cli import app  # noqa: F401
