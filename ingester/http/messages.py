"""What an HTTP failure says: the server's own message, the reason of a connection failure, and URLs
fit for a message (no password, bounded length). Every error of the HTTP layer is built from these."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ingester.config import redact_url

if TYPE_CHECKING:  # requests is imported by the sessions; this module stays light (tokens use it)
    import requests


def server_message(response: requests.Response) -> str:
    """The most useful text of an error answer: OData/OAuth error fields, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip().replace("\n", " ")
        return text[:300]
    if isinstance(body, dict):
        for key in ("detail", "error_description", "message", "error", "Message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("Message") or value.get("ErrorMessage") or value
            elif isinstance(value, list) and value and isinstance(value[0], dict) and "msg" in value[0]:
                # validation errors: [{"loc": ["query", "$skip"], "msg": "Input should be …"}, …]
                value = "; ".join(
                    f"{'.'.join(str(p) for p in v.get('loc', [])[1:]) or 'request'}: {v.get('msg')}" for v in value
                )
            if value:
                return str(value)[:300]
    return str(body)[:300]


_CONNECTION_PREFIX = re.compile(r"^(\w+\(host=[^)]*\)|<[^>]*>): ")


def connection_reason(exc: BaseException) -> str:
    """`Type: reason` of a connection failure, without the URL and pool details requests repeats
    (`HTTPConnectionPool(host=…, port=…): Max retries exceeded with url: … (Caused by …)`)."""
    reason: BaseException = exc
    seen = 0
    while seen < 5:  # requests → urllib3 MaxRetryError → the underlying error
        seen += 1
        inner = getattr(reason, "reason", None)
        if isinstance(inner, BaseException):
            reason = inner
            continue
        args = getattr(reason, "args", ())
        if args and isinstance(args[0], BaseException):
            reason = args[0]
            continue
        break
    text = str(reason)
    # urllib3 prefixes the connection: "HTTPConnectionPool(host=…, port=…): …", "<…HTTPConnection object
    # at 0x…>: …", "HTTPConnection(host=…, port=…): …"
    text = _CONNECTION_PREFIX.sub("", text)
    text = text.strip() or type(reason).__name__
    names = dict.fromkeys((type(exc).__name__, type(reason).__name__))
    return f"{': '.join(names)}: {text[:200]}"


def short_url(url: str, limit: int = 160) -> str:
    """A URL fit for a message: no password from its user-info part, cut after `limit` characters."""
    url = redact_url(url)
    return url if len(url) <= limit else url[:limit] + "…"
