"""Offline STAC validation: pystac's validator primed with the vendored extension schemas."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from pystac.validation import JsonSchemaSTACValidator, set_validator

SCHEMAS = Path(__file__).resolve().parent.parent / "data" / "stac_schemas"


@contextlib.contextmanager
def offline_validation() -> Iterator[JsonSchemaSTACValidator]:
    """Every schema pystac asks for comes from pystac's bundle or tests/data/stac_schemas; a missing one
    would need the network, which the tests do not have, and fails the validation."""
    validator = JsonSchemaSTACValidator()
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        validator.schema_cache[schema["$id"].rstrip("#")] = schema
    set_validator(validator)
    try:
        yield validator
    finally:
        set_validator(JsonSchemaSTACValidator())
