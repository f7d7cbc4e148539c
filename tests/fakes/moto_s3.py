"""A real S3 API on 127.0.0.1 (moto's threaded server) for s3:// storage and the bucket provider."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_s3() -> Iterator[str]:
    """Start moto's server; yields its endpoint URL. Credentials: any (moto accepts all)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_env(monkeypatch, endpoint: str) -> None:
    """Point ingester (INGESTER_S3_*) and boto (AWS_*) at the moto server with dummy credentials."""
    for key, value in {
        "INGESTER_S3_ENDPOINT_URL": endpoint,
        "INGESTER_S3_ACCESS_KEY_ID": "testing",
        "INGESTER_S3_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


def make_bucket(endpoint: str, bucket: str, requester_pays: bool = False) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    if requester_pays:
        client.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})


@contextmanager
def requester_pays_s3(buckets: set[str]) -> Iterator[tuple[str, list[dict]]]:
    """moto's S3 behind a check that real S3 makes and moto does not: a request to a requester-pays
    bucket without `x-amz-request-payer: requester` is refused with 403 AccessDenied. Yields the
    endpoint URL and the list of requests seen (method, path, whether the payer header was sent, the
    `Range` header, the status and the body bytes sent)."""
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    seen: list[dict] = []

    def checked(environ, start_response):
        path = environ.get("PATH_INFO", "")
        bucket = path.lstrip("/").split("/", 1)[0]
        payer = environ.get("HTTP_X_AMZ_REQUEST_PAYER", "").lower() == "requester"
        record = {"method": environ.get("REQUEST_METHOD"), "path": path, "payer": payer,
                  "range": environ.get("HTTP_RANGE"), "status": 0, "bytes": 0}
        seen.append(record)
        if bucket in buckets and not payer and environ.get("REQUEST_METHOD") != "PUT":
            body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                    b"<Message>Access Denied</Message></Error>")
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            record["status"] = 403
            return [body]

        def counted_start(status, headers, exc_info=None):
            record["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        chunks = []
        result = app(environ, counted_start)
        try:
            for chunk in result:
                chunks.append(chunk)
                if environ.get("REQUEST_METHOD") != "HEAD":
                    record["bytes"] += len(chunk)
        finally:
            if hasattr(result, "close"):
                result.close()
        return chunks

    server = make_server("127.0.0.1", _free_port(), checked, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        thread.join()


def upload_folder(endpoint: str, bucket: str, prefix: str, folder) -> None:
    """Put every file of a local folder under `s3://bucket/prefix/` (the setup of a test bucket)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}",
                              Body=path.read_bytes(), RequestPayer="requester")
