"""Product-name parsing (mission, dates, orbit, tile, …) and `{KEY}` URL patterns
(docs/payload.md, "Product-name keys")."""

from __future__ import annotations

import re
from typing import Any

# URI schemes of object stores (fsspec: s3fs, gcsfs) and of every storage the tool writes to: one
# list for the payload's storage_uri, storage.py and the providers (payload.py cannot import storage).
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")
STORAGE_SCHEMES = ("file", *OBJECT_STORE_SCHEMES)

# The scene graph that only copies the product to storage (no burst split for Sentinel-1).
COPY_GRAPH = "CopyProductToStorage"

CONSTELLATIONS = {
    "sentinel1": "sentinel1",
    "sentinel-1": "sentinel1",
    "sentinel2": "sentinel2",
    "sentinel-2": "sentinel2",
    "landsat89": "landsat89",
    "landsat": "landsat89",
    "landsat-8": "landsat89",
    "landsat-9": "landsat89",
    "landsat8": "landsat89",
    "landsat9": "landsat89",
    "phr": "phr",
    "pleiades": "phr",
    "spot": "spot",
}

_S1 = {
    "MISSION_ID": (0, 3), "MISSION_VERSION": (2, 3), "MODE": (4, 6), "PRODUCT_TYPE": (7, 10),
    "RESOLUTION": (10, 11), "PROCESSING_LEVEL": (12, 13), "PRODUCT_CLASS": (13, 14),
    "POLARISATION": (14, 16), "DATE": (17, 25), "YEAR": (17, 21), "MONTH": (21, 23), "DAY": (23, 25),
    "TIME": (26, 32), "HOUR": (26, 28), "MINUTE": (28, 30), "SECOND": (30, 32), "ORBIT": (49, 55),
    "MISSION": (56, 62), "UNIQUE_ID": (63, 67),
}  # fmt: skip
_S2 = {
    "MISSION_ID": (0, 3), "MISSION_VERSION": (2, 3), "PRODUCT_LEVEL": (7, 10), "DATE": (11, 19),
    "YEAR": (11, 15), "MONTH": (15, 17), "DAY": (17, 19), "TIME": (20, 26), "HOUR": (20, 22),
    "MINUTE": (22, 24), "SECOND": (24, 26), "PDGS": (28, 32), "ORBIT": (34, 37), "TILE": (38, 44),
    "LATITUDE_BAND": (39, 41), "GRID_SQUARE": (41, 42), "GRANULE_ID": (42, 44), "PRODUCT_DISC": (45, 60),
}  # fmt: skip
_S2_OLD = {"MISSION_ID": (0, 3), "PRODUCT_LEVEL": (16, 19), "ORBIT": (42, 45)}
_DS_DATE = {
    "DATE": (9, 23), "YEAR": (9, 13), "MONTH": (13, 15), "DAY": (15, 17), "TIME": (17, 23),
    "HOUR": (17, 19), "MINUTE": (19, 21), "SECOND": (21, 23),
}  # fmt: skip
_PHR = {"MISSION_ID": (3, 8), **_DS_DATE, "MODE": (29, 31), "LONGITUDE": (32, 36), "LATITUDE": (36, 39),
        "LONGITUDE_STEP": (40, 42), "LATITUDE_STEP": (42, 44)}  # fmt: skip
_SPOT = {"MISSION_ID": (3, 8), "SAT_NUMBER": (7, 8), **_DS_DATE, "LONGITUDE": (41, 46), "LATITUDE": (46, 49)}
_LANDSAT = {"DATE": (17, 25), "YEAR": (17, 21), "MONTH": (21, 23), "DAY": (23, 25), "PATH": (10, 13),
            "ROW": (13, 16)}  # fmt: skip

_LANDSAT_RE = re.compile(r"^L[OTC]0[89]")
_KEY_RE = re.compile(r"\{([A-Z_]+)\}")


class NameError_(ValueError):
    """A product id too short for its template, or of an unknown kind."""


def constellation_of(product_id: str) -> str | None:
    """Constellation guessed from a product-id prefix, or None."""
    if product_id.startswith("S1"):
        return "sentinel1"
    if product_id.startswith("S2"):
        return "sentinel2"
    if product_id.startswith("DS_PHR"):
        return "phr"
    if product_id.startswith("DS_SPOT"):
        return "spot"
    if _LANDSAT_RE.match(product_id):
        return "landsat89"
    return None


def _template(product_id: str) -> tuple[dict[str, tuple[int, int]], int]:
    kind = constellation_of(product_id)
    if kind == "sentinel1":
        return _S1, 67
    if kind == "sentinel2":
        if len(product_id) > 10 and product_id[10] == "_":
            return _S2, 60
        return _S2_OLD, 45
    if kind == "phr":
        return _PHR, 44
    if kind == "spot":
        return _SPOT, 49
    if kind == "landsat89":
        return _LANDSAT, 40
    raise NameError_(f"unknown product name {product_id!r}")


def product_keys(product_id: str) -> dict[str, str]:
    """The `{KEY}` values of a product id. Every constellation gets a `SCENE` key."""
    template, length = _template(product_id)
    if len(product_id) < length:
        raise NameError_(f"product name {product_id!r} is shorter than its template ({length} characters)")
    keys = {name: product_id[a:b] for name, (a, b) in template.items()}
    keys["SCENE"] = product_id
    if _LANDSAT_RE.match(product_id):
        keys["MISSION_ID"] = product_id[0] + product_id[2:4]
        keys["COLLECTION"] = {"O": "oli", "T": "tirs"}.get(product_id[1], "oli-tirs")
    return keys


def is_copy_graph(graph_name: str | None) -> bool:
    """Whether a scene graph is `CopyProductToStorage`, named as in the payload or as its file
    (`graphs/CopyProductToStorage.json`), in any case."""
    base = re.split(r"[/\\]", graph_name or "")[-1]
    if base.lower().endswith(".json"):
        base = base[:-5]
    return base.lower() == COPY_GRAPH.lower()


_TEMPLATES = {"sentinel1": (_S1,), "sentinel2": (_S2, _S2_OLD), "phr": (_PHR,), "spot": (_SPOT,),
              "landsat89": (_LANDSAT,)}
_ANY_KEY_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def pattern_keys(constellation: str | None, extra: tuple[str, ...] = ()) -> list[str]:
    """The `{KEY}`s a pattern may use for a constellation's product ids (every constellation's for None),
    sorted: the product-name keys, `SCENE` and `extra` (such as `AREA`)."""
    templates = _TEMPLATES.get(constellation or "", ()) if constellation else tuple(
        t for group in _TEMPLATES.values() for t in group)
    keys = {"SCENE", *extra, *(k for t in templates for k in t)}
    if constellation == "landsat89" or constellation is None:
        keys |= {"MISSION_ID", "COLLECTION"}
    return sorted(keys)


def unknown_pattern_keys(pattern: str, known: list[str]) -> list[str]:
    """The `{…}` placeholders of a pattern that are not among `known` (`{SCEN}` would stay literally)."""
    return [m.group(1) for m in _ANY_KEY_RE.finditer(pattern) if m.group(1) not in known]


def format_pattern(pattern: str, product_id: str, extra: dict[str, str] | None = None) -> str:
    """Replace every `{KEY}` of the pattern by the product's value; unknown keys stay as written."""
    try:
        keys = product_keys(product_id)
    except NameError_:
        keys = {"SCENE": product_id}
    if extra:
        keys.update(extra)
    return _KEY_RE.sub(lambda m: keys.get(m.group(1), m.group(0)), pattern)


def dedup_key(product_id: str) -> str:
    """Key under which reprocessed products of one acquisition collide (latest processing wins).

    S1: the id without the 4-character CRC. S2 (compact): mission, level, sensing time, relative
    orbit and tile — the baseline `Nxxyy` and the generation time are what reprocessing changes.
    Others: the id itself.
    """
    kind = constellation_of(product_id)
    if kind == "sentinel1" and len(product_id) >= 67:
        return product_id[:62]
    if kind == "sentinel2" and len(product_id) >= 60 and product_id[10] == "_":
        return product_id[:26] + product_id[32:44]
    return product_id


# --- Landsat Collection 2 product ids (here, not in catalogue/stac.py: the download path must not load
# shapely to ask whether a scene is a Landsat product) ---------------------------------------------------

_LANDSAT_ID = re.compile(r"^(L[COTEM]0\d)_(L\w{3})_(\d{3})(\d{3})_(\d{8})_(\d{8})_(\d\d)_(T1|T2|RT)")


def landsat_parts(item_id: str) -> dict[str, str] | None:
    """Fields of a Landsat Collection 2 product id (LC08_L1TP_196022_20220105_20220114_02_T1[_SR])."""
    m = _LANDSAT_ID.match(item_id)
    if not m:
        return None
    keys = ("sensor", "correction", "path", "row", "acquired", "processed", "collection", "category")
    return dict(zip(keys, m.groups(), strict=True))


def landsat_prefix(item: dict[str, Any], assets: dict[str, dict[str, Any]], source_id: str) -> str:
    """`s3://usgs-landsat/collection02/…/<product>/`: the folder of the alternate S3 hrefs, else built
    from the id (the bucket's layout: level-1|2/standard/<sensor family>/<year>/<path>/<row>/<product>/)."""
    for entry in assets.values():
        href = entry.get("s3") or ""
        if href.startswith("s3://usgs-landsat/") and f"/{source_id}/" in href:
            return href[: href.index(f"/{source_id}/") + len(source_id) + 2]
    parts = landsat_parts(source_id)
    if not parts:
        return ""
    level = "level-2" if parts["correction"].startswith("L2") else "level-1"
    family = {"LC": "oli-tirs", "LO": "oli-tirs", "LT": "tm", "LE": "etm", "LM": "mss"}.get(source_id[:2], "oli-tirs")
    if source_id[:4] in ("LT08", "LT09"):
        family = "oli-tirs"
    return (f"s3://usgs-landsat/collection02/{level}/standard/{family}/{parts['acquired'][:4]}/{parts['path']}/"
            f"{parts['row']}/{source_id}/")
