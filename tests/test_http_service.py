"""http.Service as the catalogue uses it: retries on 429/5xx honouring Retry-After, 4xx at once with the
server's message."""

from __future__ import annotations

import email.utils
import time

import pytest
from werkzeug import Response

from ingester.errors import HTTPError
from ingester.http import Service, retry_after_seconds


def service(httpserver, waits: list[float], retries: int = 3) -> Service:
    return Service("cat", httpserver.url_for("/odata/v1"), retries=retries, backoff=0.5, sleep=waits.append,
                   timeout=5)


@pytest.mark.parametrize("body, message", [
    ({"detail": [{"type": "less_than_equal", "loc": ["query", "$skip"], "msg": "Input should be less than or equal "
                  "to 10000", "input": "10001"}]}, "$skip: Input should be less than or equal to 10000"),
    ({"detail": {"ErrorMessage": "Unknown collection.", "ErrorCode": 404}}, "Unknown collection."),
    ({"error": "invalid_grant", "error_description": "Invalid user credentials"}, "Invalid user credentials"),
])
def test_client_errors_fail_at_once_with_the_server_message(httpserver, body, message):
    httpserver.expect_request("/odata/v1/Products").respond_with_json(body, status=422)
    waits: list[float] = []
    with pytest.raises(HTTPError) as info:
        service(httpserver, waits).get_json("Products")
    assert info.value.status == 422 and str(info.value).endswith(f"answered 422: {message}")
    assert waits == [] and len(httpserver.log) == 1


def test_429_and_5xx_are_retried_with_retry_after_then_backoff(httpserver):
    answers = iter([Response("slow down", 429, {"Retry-After": "3"}), Response("down", 503),
                    Response('{"value": []}', 200, content_type="application/json")])
    httpserver.expect_request("/odata/v1/Products").respond_with_handler(lambda request: next(answers))
    waits: list[float] = []
    svc = service(httpserver, waits)
    assert svc.get_json("Products", params={"$top": 1}) == {"value": []}
    assert waits == [3.0, 1.0] and svc.requests_sent == 3


def test_retries_end_with_the_last_status_and_message(httpserver):
    httpserver.expect_request("/odata/v1/Products").respond_with_data("Service Unavailable", status=503)
    waits: list[float] = []
    with pytest.raises(HTTPError, match=r"answered 503 after 3 tries: Service Unavailable") as info:
        service(httpserver, waits, retries=2).get_json("Products")
    assert info.value.status == 503 and waits == [0.5, 1.0]


def test_retry_after_as_http_date_is_honoured_and_capped():
    class R:
        def __init__(self, value):
            self.headers = {"Retry-After": value}

    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(R(soon), 1.0) <= 30
    assert retry_after_seconds(R("86400"), 1.0) == 300.0
    assert retry_after_seconds(R("soon"), 2.0) == 2.0
    assert retry_after_seconds(None, 2.0) == 2.0
