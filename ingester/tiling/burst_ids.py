"""ESA burst ids (relative and absolute) and the geocube-ingester AnxTime key
(docs/bursts.md, "ESA burst ids", "AnxTime key").

Formula of the Sentinel-1 Level 1 Detailed Algorithm Definition (its section 9): with t_b the reference time of
the burst cycle (the middle of the central swath's burst), t_anx the ascending-node time and r the
relative orbit, relative id = 1 + floor((t_b − t_anx + (r − 1) × T_orb − T_pre) / T_beam); the
absolute id uses the absolute orbit instead of r.
"""

from __future__ import annotations

import math

T_ORB = 12 * 86400 / 175  # nominal orbit period, 5924.571… s
GEOCUBE_ORBIT_MODULUS = 5924  # the original's integer-arithmetic period (docs/bursts.md, "AnxTime key")

# mode → (T_beam, T_pre, swath-to-swath offsets of one cycle, central swath index)
_MODES: dict[str, tuple[float, float, tuple[float, ...], int]] = {
    "IW": (2.758273, 2.299849, (0.832, 1.078, 0.848), 1),
    "EW": (3.038376, 2.299970, (0.683, 0.559, 0.612, 0.565, 0.619), 2),
}
MAX_RELATIVE_ID = {mode: math.floor(175 * T_ORB / beam) for mode, (beam, *_rest) in _MODES.items()}


class BurstIdError(ValueError):
    """A mode or swath the burst-id formula does not cover."""


def cycle_offset(swath: str) -> float:
    """Seconds from the start of a swath's burst to the reference time t_b of its cycle.

    `sensingTime` of swath n lies sum(offsets[:n]) after the cycle's first swath; t_b is the middle
    of the central swath: sum(offsets[:c]) + offsets[c] / 2 after the first swath.
    """
    mode, index = swath[:2].upper(), swath[2:]
    if mode not in _MODES or not index.isdigit():
        raise BurstIdError(f"no burst-id formula for swath {swath!r} (IW1–IW3, EW1–EW5)")
    _beam, _pre, offsets, central = _MODES[mode]
    n = int(index) - 1
    if not 0 <= n < len(offsets):
        raise BurstIdError(f"swath {swath!r} out of range for mode {mode}")
    return sum(offsets[:central]) + offsets[central] / 2 - sum(offsets[:n])


def first_swath_offset(swath: str) -> float:
    """Seconds from the start of a swath's burst back to the start of its cycle's first swath (≤ 0)."""
    mode, index = swath[:2].upper(), swath[2:]
    if mode not in _MODES or not index.isdigit():
        raise BurstIdError(f"no burst-id formula for swath {swath!r} (IW1–IW3, EW1–EW5)")
    offsets = _MODES[mode][2]
    return -sum(offsets[: int(index) - 1])


def burst_ids(swath: str, since_anx: float, relative_orbit: int, absolute_orbit: int) -> tuple[int, int]:
    """(relative, absolute) ESA burst ids from t_b − t_anx (`since_anx`, seconds).

    A burst after the next ANX (since_anx ≥ T_orb, in a product that crosses it) gives an id past the
    end of the relative orbit; it is wrapped back into 1 … max as the DAD prescribes.
    """
    mode = swath[:2].upper()
    if mode not in _MODES:
        raise BurstIdError(f"no burst-id formula for swath {swath!r}")
    beam, pre, _offsets, _central = _MODES[mode]
    relative = 1 + math.floor((since_anx + (relative_orbit - 1) * T_ORB - pre) / beam)
    relative = (relative - 1) % MAX_RELATIVE_ID[mode] + 1
    absolute = 1 + math.floor((since_anx + (absolute_orbit - 1) * T_ORB - pre) / beam)
    return relative, absolute


def anx_key(azimuth_anx_time: float, modulus: float = GEOCUBE_ORBIT_MODULUS) -> int:
    """geocube-ingester's burst key: round((azimuthAnxTime mod 5924) × 10), halves away from zero."""
    value = math.fmod(azimuth_anx_time, modulus) * 10
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def relative_orbit_from_absolute(mission: str, absolute_orbit: int) -> int | None:
    """S1A r = ((a − 73) mod 175) + 1, S1B r = ((a − 27) mod 175) + 1; None for other missions."""
    offsets = {"S1A": 73, "S1B": 27}
    if mission.upper() not in offsets:
        return None
    return (absolute_orbit - offsets[mission.upper()]) % 175 + 1
