"""Annotation zip on s3:// (a real S3 API: moto server on 127.0.0.1), opened through fsspec/s3fs."""

from __future__ import annotations

import socket

import pytest

from ingester.config import Settings
from ingester.tiling.sources import PatternSource
from tests.fakes.cdse_nodes import IW2_2023, make_product, product_scene, write_zip

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket="annotations")
    yield url, client
    server.stop()


def test_zip_on_s3_gives_the_annotations_and_a_missing_zip_is_a_miss(testdata, tmp_path, s3):
    url, client = s3
    product = make_product(testdata, IW2_2023)
    zip_path = write_zip(tmp_path / "p.zip", product.scene_id, product.annotations, padding=3_000_000)
    client.upload_file(str(zip_path), "annotations", f"2023/{product.scene_id}.zip")
    settings = Settings(s3_endpoint_url=url, s3_access_key_id="testing", s3_secret_access_key="testing")
    source = PatternSource("s3://annotations/{YEAR}/{SCENE}.zip", "LA", settings)
    assert source.fetch(product_scene(product)) == list(product.annotations.items())
    assert PatternSource("s3://annotations/{YEAR}/missing-{SCENE}.zip", "LA", settings).fetch(
        product_scene(product)) is None
