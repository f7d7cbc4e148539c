"""Catalogues: one module per catalogue behind one interface, `search(payload, settings, page, limit)`."""

from __future__ import annotations

import dataclasses

from ingester.scenes import Scene


@dataclasses.dataclass
class SearchResult:
    scenes: list[Scene]
    next: bool  # more scenes exist beyond this page
    pages: int = 0  # provider pages fetched
    requests: int = 0  # HTTP requests sent
    catalogue: str = ""  # which catalogue answered
