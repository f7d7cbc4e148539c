"""URL patterns of the bucket and FTP providers: one grammar for INGESTER_BUCKET_PATTERNS and
INGESTER_FTP_PATTERNS.

Entries are separated by `;` or new lines; each is `[constellation=]scheme://…{KEY}…`. An entry with
a constellation prefix (`sentinel2=gs://…`) applies to that constellation only, one without to every
constellation. Entries are tried in the order written.
"""

from __future__ import annotations

from ingester.errors import ConfigError
from ingester.naming import CONSTELLATIONS, pattern_keys, unknown_pattern_keys


def parse_patterns(text: str, variable: str, schemes: tuple[str, ...]) -> list[tuple[str | None, str]]:
    """[(constellation or None, pattern)]; raises ConfigError naming `variable` for a bad entry."""
    out: list[tuple[str | None, str]] = []
    known = ", ".join(sorted(set(CONSTELLATIONS.values())))
    wanted = " or ".join(f"{s}://" for s in schemes)
    for raw in text.replace("\n", ";").split(";"):
        entry = raw.strip()
        if not entry:
            continue
        constellation: str | None = None
        key, sep, rest = entry.partition("=")
        if sep and "://" not in key and "/" not in key:
            constellation = CONSTELLATIONS.get(key.strip().lower())
            if constellation is None:
                raise ConfigError(f"{variable}: {entry!r}: unknown constellation {key.strip()!r} (known: {known})")
            entry = rest.strip()
        scheme = entry.split("://", 1)[0].lower() if "://" in entry else ""
        if scheme not in schemes or not entry.split("://", 1)[1].strip("/"):
            raise ConfigError(f"{variable}: {raw.strip()!r}: expected [constellation=]{wanted}… pattern")
        keys = pattern_keys(constellation)
        unknown = unknown_pattern_keys(entry, keys)
        if unknown:
            raise ConfigError(f"{variable}: {raw.strip()!r}: unknown key(s) "
                              f"{', '.join('{' + k + '}' for k in unknown)}; known: {', '.join(keys)}")
        out.append((constellation, entry))
    return out


def patterns_for(text: str, variable: str, schemes: tuple[str, ...], constellation: str | None) -> list[str]:
    """The patterns that apply to a constellation, in order."""
    return [p for c, p in parse_patterns(text, variable, schemes) if c is None or c == constellation]
