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
    import ingester.storage as storage

    for key, value in {
        "INGESTER_S3_ENDPOINT_URL": endpoint,
        "INGESTER_S3_ACCESS_KEY_ID": "testing",
        "INGESTER_S3_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(storage, "_OPTIONS", {})


def make_bucket(endpoint: str, bucket: str, requester_pays: bool = False) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    if requester_pays:
        client.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
