"""Airbus OneAtlas: Pléiades and SPOT products, ordered when needed, downloaded once delivered
(docs/providers.md, "OneAtlas").

For a OneAtlas scene (`metadata.catalogue` `oneatlas`):

1. A product already in the account's workspace (`metadata.download_link`, from the search) is
   downloaded at once.
2. Otherwise the account's orders are listed (`GET /api/v1/orders`) and an order of this product over
   this area with the tool's options is looked for: one order per product, also when a run died
   between ordering and recording it (the listing is the truth, never a note of ours).
3. No order: the product is ordered only when the job's terms allow it (`metadata.order`, from the
   AOI: `ingester aoi --order`, or the payload's `order`), and under a budget only at no more than its
   approved price (asked again with `POST /api/v1/prices`; a quote OneAtlas marks not orderable is
   refused). `POST /api/v1/orders`, then the job is deferred.
4. `ordered`/`processing`: deferred for `INGESTER_ONEATLAS_ORDER_RECHECK` seconds (the run goes on;
   exit 5 if it ends before, and a later run checks again). `failed`/`rejected`/`error`: the job's
   error, with OneAtlas's message (the tool never orders again by itself: a new order placed through
   OneAtlas is found by the next run). `delivered`: the delivery's download link.

The zip (DIMAP folders) is downloaded with the bearer token (a job carries a short-lived token from the
coordinator, never the API key), or, where the server refuses it, with HTTP Basic `APIKEY:<key>` and
the key of the worker's own environment (`ingester.oneatlas_auth`); resumed across attempts and checked
against the size the server announces (OneAtlas publishes no checksum).
"""

from __future__ import annotations

import time
from pathlib import Path

from ingester import oneatlas as api
from ingester.config import Settings, oneatlas_api_key
from ingester.errors import ConfigError, Deferred, HTTPError, NotFound, ProviderError
from ingester.http.session import Service
from ingester.http.transfer import download
from ingester.providers.base import Provider, expected_from_metadata, product_name, provider_error, resume_part
from ingester.providers.slots import slot
from ingester.scenes import Scene
from ingester.times import epoch_text


class OneAtlasProvider(Provider):
    name = "oneatlas"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        try:
            return bool(oneatlas_api_key(settings))
        except ConfigError:
            return False  # a ~/.netrc that cannot be used: the settings check says so

    def may_have(self, scene: Scene) -> bool:
        return str(scene.metadata.get("catalogue") or "") == "oneatlas"

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        if str(scene.metadata.get("catalogue") or "") != "oneatlas":
            raise NotFound("oneatlas: not a OneAtlas scene")
        name = product_name(scene)
        try:
            link = str(scene.metadata.get("download_link") or "").strip()
            if not link:
                link = self._delivered_link(scene, name, api.service(self.settings, self.clients, "order"))
            dest = workdir / f"{name}.zip"
            verified = download(api.service(self.settings, self.clients, "download"), link, str(dest), auth=True,
                                progress=self.progress,
                                expected=expected_from_metadata({}),
                                part=resume_part(self.settings, self.name, scene, dest.name))
        except HTTPError as exc:
            raise provider_error("oneatlas", exc) from None
        self.verified[str(dest)] = verified
        return dest

    def _later(self, message: str) -> Deferred:
        retry_at = time.time() + self.settings.oneatlas_order_recheck
        return Deferred(f"oneatlas: {message}: checked again at {epoch_text(retry_at)}", retry_at)

    def _delivered_link(self, scene: Scene, name: str, svc: Service) -> str:
        """The download link of the product's delivered order; orders it when allowed; Deferred while
        OneAtlas processes it; ProviderError when it failed or may not be ordered."""
        try:
            product = api.order_product(scene.metadata, name)
        except ValueError as exc:
            raise ProviderError(f"oneatlas: {exc}") from None
        # one job at a time looks for (and places) the order of a product on this machine: two runs that
        # need the same product over the same area never both order it
        lock = Path(self.settings.workdir).resolve() / ".slots" / "oneatlas-orders" / product["id"].lower()
        with slot(lock, 1):
            found = api.find_order(api.iter_orders(svc), product)
            if found is None:
                raise self._order(scene, name, svc, product)
        item, delivery = found
        state = api.delivery_state(item, delivery)
        order_id = str(item.get("id") or "?")
        if state == api.DELIVERED:
            href = api.download_href(delivery)
            if href:
                return href
            raise self._later(f"order {order_id} of {name} is delivered but has no download link yet")
        if state in api.GIVEN_UP:
            raise ProviderError(f"oneatlas: order {order_id} of {name} is {state}: {api.message_of(delivery, item)} "
                                "(the tool does not order it again: see the order in OneAtlas)")
        if state in api.WAITING:
            raise self._later(f"order {order_id} of {name} is {state}")
        raise self._later(f"order {order_id} of {name} is in the state {state or '(none)'!r}")

    def _order(self, scene: Scene, name: str, svc: Service, product: dict) -> Deferred:
        """Order the product when the terms allow it; the deferral to raise once ordered."""
        terms = api.as_dict(scene.metadata.get("order"))
        if not terms.get("allowed"):
            raise ProviderError(f"oneatlas: {name} must be ordered, which costs credits, and ordering is not allowed "
                                f"for the AOI {scene.aoi}: run `ingester aoi PAYLOAD --order --max-cost N` (or set "
                                "\"order\": \"true\" in the payload's scene_type.parameters), then "
                                f"`ingester retry {scene.aoi}`")
        if terms.get("capped") and terms.get("approved_cost") is None:
            raise ProviderError(f"oneatlas: {name} is not among the products whose price the budget approved: run "
                                f"`ingester aoi PAYLOAD --order --max-cost N` again, then `ingester retry {scene.aoi}`")
        quote = api.prices(svc, [product])
        price = api.as_dict(quote.get("price"))
        amount = api.amount_of(price.get("amount"))
        unit = str(price.get("amountUnit") or "")
        orderable = str(quote.get("orderable") or "ok").lower()
        if orderable not in ("ok", "true", "yes"):
            raise ProviderError(f"oneatlas: OneAtlas says {name} is not orderable ({quote.get('orderable')}; "
                                f"feasibility {quote.get('feasibility') or '?'}): not ordered")
        approved = api.amount_of(terms.get("approved_cost"))
        if terms.get("capped") and (amount is None or approved is None or amount > approved * (1 + 1e-9) + 1e-9):
            raise ProviderError(f"oneatlas: {name} now costs {amount if amount is not None else '?'} {unit}, more than "
                                f"the {approved} {terms.get('unit') or unit} its budget approved: not ordered (run "
                                "`ingester aoi PAYLOAD --order --max-cost N` again to approve the new price)")
        created = api.create_order(svc, product)
        order_id = str(created.get("id") or "?")
        cost = f"{amount:g} {unit}".rstrip() if amount is not None else "price unknown"
        return self._later(f"ordered {name} (order {order_id}, {cost}); OneAtlas is processing it")


__all__ = ["OneAtlasProvider"]
