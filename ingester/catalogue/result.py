"""What a catalogue search returns (shared by every catalogue module)."""

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
    rows: int = 0  # catalogue rows examined (before client-side checks and de-duplication)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason → products set aside
    filters: dict[str, str] = dataclasses.field(default_factory=dict)  # catalogue parameters applied (defaults too)
