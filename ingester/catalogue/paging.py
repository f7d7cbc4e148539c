"""Reading an ordered OData result set row by row, whatever its size.

The CDSE catalogue pages with `$top` (≤ 1000) and `$skip` (≤ 10000) and announces the next page with
`@odata.nextLink` (spelt `@OData.nextLink` in its documentation). `ODataPager.rows(start, count)`
yields the rows `start … start+count−1` of the result ordered by `ContentDate/Start asc` (the server
breaks ties by `Id`):

- it follows the next link while it points where we want to go, and computes `$skip` itself when
  the link is missing, broken or would fetch more than needed; once the server has sent links, a
  full page without one (below the ceiling) is the last;
- when the wanted row lies beyond the `$skip` ceiling, it narrows the time window: the new window
  is `ContentDate/Start ge d`, where `d` is the date of the last row fetched, and starts at the
  first row of date `d` (found among the rows fetched in the window, reading the rows just before
  when needed), so the absolute position of every row stays known and already-seen Ids are never
  yielded twice. Only more rows of one date than the ceiling allows cannot be split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from ingester.errors import CatalogueError, HTTPError
from ingester.http.session import Service
from ingester.times import parse_time

NEXT_LINK_KEYS = ("@odata.nextLink", "@OData.nextLink")


def odata_time(value: datetime) -> str:
    """An OData DateTimeOffset literal in UTC: milliseconds, or microseconds when they matter."""
    value = value.astimezone(UTC).replace(tzinfo=None)  # isoformat pads the year to 4 digits, strftime does not
    return value.isoformat(timespec="microseconds" if value.microsecond % 1000 else "milliseconds") + "Z"


@dataclasses.dataclass
class PagerStats:
    pages: int = 0  # answers received
    windows: int = 0  # time-window splits past the $skip ceiling
    link_fallbacks: int = 0  # next links missing or broken, replaced by a computed $skip


class ODataPager:
    """Rows of one `$filter` on `<base>/Products`, ordered by `ContentDate/Start asc`."""

    def __init__(self, service: Service, filter_: str, *, page_size: int = 1000, max_skip: int = 10000,
                 expand: str = "Attributes", entity: str = "Products", stats: PagerStats | None = None,
                 prefetch: bool = True):
        if not 1 <= page_size:
            raise ValueError("page_size must be ≥ 1")
        self.service = service
        self.filter = filter_
        self.page_size = page_size
        self.max_skip = max_skip
        self.expand = expand
        self.entity = entity
        self.stats = stats or PagerStats()
        self.prefetch = prefetch
        self.exhausted = False  # the last `rows` call reached the end of the result set

    def _params(self, lower: str | None, skip: int, top: int) -> dict[str, Any]:
        flt = self.filter if lower is None else f"{self.filter} and ContentDate/Start ge {lower}"
        params: dict[str, Any] = {"$filter": flt, "$orderby": "ContentDate/Start asc", "$top": top}
        if skip:
            params["$skip"] = skip
        if self.expand:
            params["$expand"] = self.expand
        return params

    def _get(self, url: str, params: dict[str, Any] | None) -> tuple[list[dict], str | None]:
        body = self.service.get_json(url, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise CatalogueError(f"{self.service.name}: unexpected answer (no 'value' list): {str(body)[:200]}")
        status = body.get("status")
        if status not in (None, 0, 200, "0", "200"):
            raise CatalogueError(f"{self.service.name}: answer with status {status}: {str(body)[:200]}")
        self.stats.pages += 1
        link = next((body[k] for k in NEXT_LINK_KEYS if isinstance(body.get(k), str) and body[k]), None)
        return body["value"], link

    def _link_matches(self, link: str | None, skip: int, top: int) -> bool:
        """Whether a next link asks for exactly the page we want next, on the configured host (a
        mirror or proxy may answer with the upstream service's links: those are not followed)."""
        if not link:
            return False
        parsed = urlparse(link)
        base = urlparse(self.service.base_url)
        if (parsed.scheme, parsed.netloc) != (base.scheme, base.netloc):
            return False
        query = parse_qs(parsed.query)
        try:
            return int(query.get("$skip", ["0"])[0]) == skip and int(query.get("$top", ["20"])[0]) == top
        except ValueError:
            return False

    def _request(self, pos: int, end: int | None, base: int) -> tuple[int, int] | None:
        """(window $skip, $top) of the request that reads row `pos`; None when the window must move."""
        wskip = pos - base
        if wskip > self.max_skip:
            return None
        return wskip, self.page_size if end is None else min(self.page_size, end - pos)

    def rows(self, start: int = 0, count: int | None = None) -> Generator[dict, None, None]:
        """Yield rows `start … start+count−1` (all rows from `start` when count is None).

        While the caller handles one page, the next one is already being fetched (one background
        request at a time, on the service's session)."""
        self.exhausted = False
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odata-prefetch") if self.prefetch else None
        try:
            yield from self._rows(start, count, executor)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

    def _rows(self, start: int, count: int | None, executor: ThreadPoolExecutor | None) -> Iterator[dict]:
        end = None if count is None else start + count
        pos = start  # absolute position of the next row wanted
        lower: str | None = None  # current window: ContentDate/Start ge lower (None: the whole period)
        base = 0  # absolute position of the current window's first row
        link: str | None = None  # next link of the last answer
        last_page: list[dict] = []  # last page fetched in the current window
        fetched: dict[int, str] = {}  # window position → ContentDate/Start of the rows fetched in this window
        seen: set[str] = set()
        links_seen = False  # the server announces next pages: a full page without a link is the last
        pending: tuple[Future, tuple] | None = None  # a request sent ahead: (future, (lower, skip, top))
        while end is None or pos < end:
            request = self._request(pos, end, base)
            if request is None:
                if last_page:  # move the window to the last date seen
                    first_pos, last = self._first_of_last_date(fetched)
                    if first_pos > 0 and first_pos - 1 not in fetched:  # rows before it not seen yet: read them
                        gap_skip = max(0, first_pos - self.page_size)
                        gap, _ = self._page(None, lower, gap_skip, first_pos - gap_skip, False)
                        fetched.update((gap_skip + i, _date(row)) for i, row in enumerate(gap))
                        continue
                    if first_pos == 0:
                        raise CatalogueError(
                            f"{self.service.name}: too many products share ContentDate/Start {last} to page "
                            f"past the $skip ceiling ({self.max_skip}); narrow the search period or the AOI")
                    lower, base = odata_time(parse_time(last)), base + first_pos
                    self.stats.windows += 1
                    link, last_page, fetched = None, [], {}
                    continue
                request = (self.max_skip, self.page_size)  # a page that tells where to cut
            skip, top = request
            if pending is not None and pending[1] == (lower, skip, top):
                page, link = pending[0].result()
            else:
                page, link = self._page(link, lower, skip, top, full_before=len(last_page) == self.page_size)
            pending = None
            first = base + skip
            links_seen = links_seen or link is not None
            after = max(pos, first + len(page)) if end is None else max(pos, min(first + len(page), end))
            done = len(page) < top or (link is None and links_seen and after - base <= self.max_skip)
            ahead = None if done or (end is not None and after >= end) else self._request(after, end, base)
            if executor is not None and ahead is not None:
                pending = (executor.submit(self._page, link, lower, *ahead, len(page) == self.page_size),
                           (lower, *ahead))
            for i, row in enumerate(page):
                at = first + i
                if at < pos or (end is not None and at >= end):
                    continue
                pos = at + 1
                rid = str(row.get("Id", ""))
                if rid and rid in seen:  # a server that repeats a row across pages
                    continue
                seen.add(rid)
                yield row
            pos = after
            if done:
                self.exhausted = True
                return  # the result set ends here
            last_page = page
            fetched.update((skip + i, _date(row)) for i, row in enumerate(page))

    def _page(self, link: str | None, lower: str | None, skip: int, top: int,
              full_before: bool) -> tuple[list[dict], str | None]:
        """One page: through the server's next link when it asks for this very page, else computed."""
        if self._link_matches(link, skip, top):
            try:
                return self._get(link, None)  # type: ignore[arg-type]
            except HTTPError as exc:
                if exc.status is None or exc.status >= 500 or exc.status == 429:
                    raise
                self.stats.link_fallbacks += 1  # a broken link: compute the page ourselves
        elif link is None and full_before and skip:
            self.stats.link_fallbacks += 1  # a full page without a next link
        return self._get(self.entity, self._params(lower, skip, top))

    @staticmethod
    def _first_of_last_date(fetched: dict[int, str]) -> tuple[int, str]:
        """(window position, date) of the first row of the last row's date, going back over the
        rows fetched in this window while they are contiguous."""
        pos = max(fetched)
        last = fetched[pos]
        while pos - 1 in fetched and fetched[pos - 1] == last:
            pos -= 1
        return pos, last


def _date(row: dict) -> str:
    try:
        return str(row["ContentDate"]["Start"])
    except (KeyError, TypeError):
        raise CatalogueError(f"catalogue product {row.get('Name', '?')!r} has no ContentDate/Start") from None
