"""Moved to `ingester.http.tokens` (with the token managers) and `ingester.job_context` (a job's handed
tokens). The names below are re-exported for one release; import them from `ingester.http.tokens`."""

from __future__ import annotations

from ingester.http.tokens import (
    AccessToken,
    HandedToken,
    JobTokens,
    TokenChannel,
    TokenSource,
    error_reply,
    raise_reply,
    worker_settings,
)

__all__ = ["AccessToken", "HandedToken", "JobTokens", "TokenChannel", "TokenSource", "error_reply", "raise_reply",
           "worker_settings"]
