"""Permission and budget to order products that cost money (OneAtlas), and what a job is told of them.

Nothing is ordered unless the command (`ingester aoi --order`) or the payload (`"order": "true"` in
`scene_type.parameters`) says so. Before anything is written, the products the run may order (the new
scenes, and the AOI's PENDING/RETRY scenes, that need an order) are priced in one request
(`catalogue.oneatlas.estimate`: products already ordered cost nothing more); with a budget
(`--max-cost N`, or the payload's `maxCost`) an estimated total above it refuses the whole ingestion
(exit 2): nothing is written, nothing ordered.

What was approved is kept with the AOI (its settings, `order`: allowed, the budget, each scene's
approved price); every later `ingester aoi` replaces it (an `aoi` without `--order` takes the
permission back), `ingester run` and `retry` use it as it stands. A scene job carries its terms in
`metadata.order` (`with_order_terms`); the provider orders only when they allow it, and, under a
budget, only a scene whose price was approved, at no more than that price.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ingester.config import Settings
from ingester.errors import InputError
from ingester.payload import Payload
from ingester.scenes import Scene


@dataclasses.dataclass(frozen=True)
class Permission:
    allowed: bool = False
    max_cost: float | None = None
    source: str = ""  # who allowed it: "--order" or "the payload"


def permission(payload: Payload, order: bool = False, max_cost: float | None = None) -> Permission:
    """The permission of this ingestion: `--order` or the payload's `order`; the budget of
    `--max-cost`, else the payload's `maxCost`."""
    params = payload.parameters
    by_payload = params.get("order", "").strip().lower() == "true"
    if max_cost is not None and not (max_cost >= 0 and math.isfinite(max_cost)):
        raise InputError(f"--max-cost {max_cost}: must be a number ≥ 0")
    cap = max_cost if max_cost is not None else (float(params["maxCost"]) if "maxCost" in params else None)
    allowed = order or by_payload
    if max_cost is not None and not allowed:
        raise InputError("--max-cost limits what an ingestion may order: give --order too (or \"order\": \"true\" in "
                         "the payload's scene_type.parameters); without either nothing is ordered")
    return Permission(allowed, cap if allowed else None, "--order" if order else "the payload" if by_payload else "")


def needs_order(scene: Scene) -> bool:
    """A OneAtlas scene whose product is not in the account's workspace yet: it must be ordered."""
    from ingester.catalogue.oneatlas import is_oneatlas

    return is_oneatlas(scene) and not str(scene.metadata.get("download_link") or "").strip()


def aoi_order_scenes(store: Any, aoi: str) -> list[Scene]:
    """The AOI's scenes a run may still order (PENDING or RETRY, needing an order)."""
    row = store.aoi(aoi)
    if row is None:
        return []
    out = []
    for status in ("PENDING", "RETRY"):
        for scene_row in store.scene_rows(row.id, status):
            scene = store.scene(scene_row.id)
            if needs_order(scene):
                out.append(scene)
    return out


def approve(scenes: list[Scene], settings: Settings, perm: Permission,
            clients: Any = None) -> tuple[dict[str, Any], Any]:
    """The AOI's `order` settings for this ingestion, and the estimate (None when nothing may be
    ordered). Raises InputError (exit 2) when the estimate exceeds the budget: nothing written yet.
    `clients`: the command's HTTP clients (`http.Clients`: its OneAtlas login)."""
    if not perm.allowed:
        return {"allowed": False}, None
    terms: dict[str, Any] = {"allowed": True, "max_cost": perm.max_cost, "approved": {}, "unit": "",
                             "estimate": 0.0}
    wanted = [s for s in scenes if needs_order(s)]
    if not wanted:
        return terms, None
    from ingester.catalogue.oneatlas import estimate

    result = estimate(wanted, settings, clients=clients)
    if perm.max_cost is not None and result.total > perm.max_cost:
        raise InputError(f"refused before any order: the {len(wanted)} product(s) to order are estimated at "
                         f"{result.total:g} {result.unit}".rstrip() + f", above the budget of {perm.max_cost:g} "
                         f"(--max-cost or the payload's maxCost; {result.text()}); nothing was written or ordered")
    terms.update(approved=dict(result.per_scene), unit=result.unit, estimate=result.total)
    return terms, result


def with_order_terms(scene: Scene, aoi_settings: dict[str, Any]) -> Scene:
    """The scene as its job sees it: with `metadata.order` = what the AOI allows for it (`allowed`,
    and under a budget `capped` with the `approved_cost` in `unit`)."""
    order = aoi_settings.get("order") if isinstance(aoi_settings, dict) else None
    if not isinstance(order, dict) or not needs_order(scene):
        return scene
    terms: dict[str, Any] = {"allowed": bool(order.get("allowed"))}
    if terms["allowed"] and order.get("max_cost") is not None:
        terms["capped"] = True
        approved = (order.get("approved") or {}).get(scene.source_id)
        if approved is not None:
            terms["approved_cost"] = approved
            terms["unit"] = order.get("unit") or ""
    return dataclasses.replace(scene, metadata={**scene.metadata, "order": terms})
