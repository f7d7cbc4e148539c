"""Foundation behaviour: times, naming, config precedence, atomic writes, scenes files round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingester.config import load_settings
from ingester.errors import ConfigError, ScenesFileError
from ingester.naming import dedup_key, format_pattern, product_keys
from ingester.scenes import read_scenes, write_scenes
from ingester.times import format_time, parse_time

S1 = "S1A_IW_SLC__1SDV_20200415T054835_20200415T054902_032134_03B6F4_06BD"
S2 = "S2A_MSIL1C_20220104T103431_N0510_R108_T32UNG_20240423T092858"


def test_times_are_parsed_to_utc_and_written_like_go_rfc3339nano():
    assert parse_time("2022-02-04T18:01:23.133+01:00") == datetime(2022, 2, 4, 17, 1, 23, 133000, tzinfo=UTC)
    assert format_time(parse_time("2022-01-04T10:34:31.000000Z")) == "2022-01-04T10:34:31Z"
    assert format_time(parse_time("2022-02-04T17:01:23.1330000001Z")) == "2022-02-04T17:01:23.133Z"
    with pytest.raises(ValueError, match="not an RFC 3339"):
        parse_time("04/02/2022")


def test_product_keys_follow_the_reference_slices():
    keys = product_keys(S1)
    assert (keys["MISSION_ID"], keys["DATE"], keys["ORBIT"], keys["MISSION"], keys["UNIQUE_ID"]) == (
        "S1A", "20200415", "032134", "03B6F4", "06BD")
    keys = product_keys(S2)
    assert (keys["TILE"], keys["LATITUDE_BAND"], keys["GRID_SQUARE"], keys["GRANULE_ID"], keys["PDGS"]) == (
        "T32UNG", "32", "U", "NG", "0510")
    assert format_pattern("/d/{YEAR}/{MONTH}/{DAY}/{SCENE}.zip{NOPE}", S2) == f"/d/2022/01/04/{S2}.zip{{NOPE}}"


def test_dedup_keys_ignore_crc_and_s2_processing_baseline():
    assert dedup_key(S1) == dedup_key(S1[:-4] + "FFFF")
    assert dedup_key(S2) == dedup_key("S2A_MSIL1C_20220104T103431_N0301_R108_T32UNG_20220104T120000")
    assert dedup_key(S2) != dedup_key(S2.replace("T32UNG", "T32UNH"))


def test_settings_precedence_is_option_then_env_then_toml(tmp_path):
    toml = tmp_path / "ingester.toml"
    toml.write_text('db = "from-toml.db"\nhttp_retries = 7\nstorage_uri = "toml-storage"\n')
    env = {"INGESTER_DB": "from-env.db", "INGESTER_HTTP_RETRIES": "3"}
    s = load_settings({"db": "from-option.db", "workers": None}, env=env, toml_path=toml)
    assert (s.db, s.http_retries, s.storage_uri) == ("from-option.db", 3, "toml-storage")


def test_settings_reject_unknown_toml_keys_and_bad_values(tmp_path):
    toml = tmp_path / "ingester.toml"
    toml.write_text('dbb = "x"\n')
    with pytest.raises(ConfigError, match="unknown key.*dbb"):
        load_settings(env={}, toml_path=toml)
    with pytest.raises(ConfigError, match="INGESTER_HTTP_RETRIES"):
        toml.write_text("")
        load_settings(env={"INGESTER_HTTP_RETRIES": "many"}, toml_path=toml)


def test_secrets_are_redacted():
    s = load_settings({"cdse_password": "hunter2"}, env={})
    assert "hunter2" not in json.dumps(s.redacted())


def test_legacy_scenes_and_tiles_files_round_trip_in_the_current_format(testdata, tmp_path):
    for name in ("scenes.json", "tiles.json"):
        legacy = read_scenes(testdata / "payloads" / name)
        out = tmp_path / name
        write_scenes(out, legacy.scenes, next_=False)
        doc = json.loads(out.read_text())
        props = doc["features"][0]["properties"]
        assert list(props) == sorted(props)
        assert "GeometryWKT" not in props and props["data"]["metadata"]["uuid"]
        again = read_scenes(out)
        assert [s.to_dict() for s in again.scenes] == [s.to_dict() for s in legacy.scenes]
        assert doc["properties"] == {"next": "false"}
    tiles = read_scenes(testdata / "payloads" / "tiles.json").scenes
    first = tiles[0].tiles[0]
    assert (first.source_id, first.anx_time, first.tile_nr, first.swath_id) == ("A44_IW1_8951", 8951, 4, "IW1")
    assert first.previous.scene_id.endswith("_1609") and first.reference.scene_id.endswith("_F4D7")
    assert tiles[2].tiles[0].previous is None


def test_hand_editing_mistakes_are_reported_with_position(tmp_path):
    bad = tmp_path / "scenes.json"
    bad.write_text('{"type": "FeatureCollection", "features": [\n  {"properties": {}},]}')
    with pytest.raises(ScenesFileError, match=r"line 2, column 22: .* \(likely cause: a trailing comma before ']'"):
        read_scenes(bad)
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [{"properties": {"data": {}}}]}))
    with pytest.raises(ScenesFileError, match=r"features\[0\].properties.source_id: is required"):
        read_scenes(bad)


def test_services_never_send_netrc_passwords_implicitly(httpserver, tmp_path, monkeypatch):
    """requests would turn a ~/.netrc entry into Basic auth on every call; a Service must not."""
    from ingester.http import Service

    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password s3cret\nmachine localhost login a password s3cret\n")
    netrc.chmod(0o600)
    httpserver.expect_request("/odata/v1/Products").respond_with_json({"value": []})
    service = Service("cdse", httpserver.url_for("/odata/v1"), retries=0)
    assert service.get_json("Products") == {"value": []}
    request, _ = httpserver.log[0]
    assert "Authorization" not in request.headers


def test_payload_with_unsupported_storage_scheme_is_rejected_before_anything_runs(cli, repo, tmp_path):
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload["storage_uri"] = "ftp://example.org/storage"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    result = cli("scenes", str(path))
    assert result.exit_code == 2
    assert "field 'storage_uri'" in result.stderr and "unsupported scheme" in result.stderr
    assert not (tmp_path / "outputs" / "scenes.json").exists()


@pytest.mark.parametrize("uri", ["gcs://bucket/storage", "gs://bucket/storage", "s3://bucket/x", "file:///tmp/x"])
def test_payload_and_storage_accept_the_same_storage_schemes(repo, tmp_path, uri):
    from types import SimpleNamespace

    from ingester.payload import load_payload
    from ingester.storage import resolve_storage_uri

    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload["storage_uri"] = uri
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    loaded = load_payload(path)
    assert resolve_storage_uri("", loaded.storage_uri, SimpleNamespace(storage_uri=""))


@pytest.mark.parametrize("name, copy", [
    ("CopyProductToStorage", True), ("copyproducttostorage", True), ("CopyProductToStorage.json", True),
    ("graphs/CopyProductToStorage.json", True), ("S1Preprocessing", False), ("CopyProductToStorageX", False),
    ("", False),
])
def test_copy_graph_is_decided_once_for_tiling_and_downloads(name, copy):
    from types import SimpleNamespace

    from ingester.naming import is_copy_graph
    from ingester.tiling import uses_bursts

    assert is_copy_graph(name) is copy
    payload = SimpleNamespace(constellation="sentinel1", scene_graph_name=name)
    assert uses_bursts(payload) is (not copy)  # type: ignore[arg-type]

def test_written_files_follow_the_umask_not_mkstemps_private_mode(tmp_path):
    import os
    import stat

    from ingester.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_secrets_stay_out_of_the_settings_repr():
    s = load_settings({"cdse_password": "hunter2", "asf_token": "tok-123"}, env={})
    assert "hunter2" not in repr(s) and "tok-123" not in repr(s)


@pytest.mark.parametrize(("variable", "value"), [("INGESTER_HTTP_TIMEOUT", "-1"), ("INGESTER_LEASE_SECONDS", "0"),
                                                 ("INGESTER_HTTP_RETRIES", "-2"), ("INGESTER_CDSE_PAGE_SIZE", "5000"),
                                                 ("INGESTER_STAC_WINDOW_MAX_SHARE", "1.5"),
                                                 ("INGESTER_STAC_WINDOW_MARGIN", "nan")])
def test_out_of_range_settings_are_input_errors(cli, repo, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    result = cli("scenes", repo / "payloads" / "denmark-s2.json")
    assert result.exit_code == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_messages_with_brackets_are_shown_verbatim_and_unwritable_outputs_are_clear_errors(cli, repo, tmp_path):
    (tmp_path / "out[1]").mkdir()
    result = cli("tiles", repo / "payloads" / "denmark-s2.json", "--scenes", tmp_path / "none[/tmp].json")
    assert result.exit_code == 2 and "none[/tmp].json" in result.stderr
    scenes = tmp_path / "scenes.json"
    scenes.write_text('{"type": "FeatureCollection", "features": []}')
    result = cli("tiles", repo / "payloads" / "denmark-s2.json", "--scenes", scenes, "-o", tmp_path / "out[1]")
    assert result.exit_code == 2  # an output that cannot be written is refused before any work
    assert "out[1]: is a folder, not a file path" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("edit", "expected"), [
    ({"start_time": "2022-13-45"}, "field 'start_time': '2022-13-45' is not a date and time"),
    ({"start_time": "2022-01-01T00:00:00"}, "field 'start_time': '2022-01-01T00:00:00' has no time zone"),
    ({"start_tim": "2022-01-01T00:00:00Z"}, "field 'start_tim': unknown key; did you mean 'start_time'?"),
])
def test_payload_mistakes_get_the_message_that_names_the_real_problem(cli, repo, tmp_path, edit, expected):
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload.update(edit)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    result = cli("scenes", str(path))
    assert result.exit_code == 2 and expected in result.stderr


def test_unclosed_ring_is_closed_with_a_warning(cli, repo, tmp_path):
    from ingester.payload import load_payload

    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload["geometry"] = {"type": "Polygon", "coordinates": [[[10.0, 54.9], [9.9, 54.9], [9.9, 55.0]]]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    with pytest.warns(UserWarning, match="a ring is not closed"):
        assert load_payload(path).aoi.area > 0


def test_endpoints_must_be_http_urls_and_their_passwords_stay_hidden(cli, repo, monkeypatch):
    monkeypatch.setenv("INGESTER_CDSE_CATALOGUE_URL", "notaurl")
    result = cli("scenes", repo / "payloads" / "denmark-s2.json")
    assert result.exit_code == 2 and "INGESTER_CDSE_CATALOGUE_URL: 'notaurl' is not an http(s) URL" in result.stderr
    monkeypatch.setenv("INGESTER_CDSE_CATALOGUE_URL", "ftp://bob:hunter2@127.0.0.1/x")
    result = cli("scenes", repo / "payloads" / "denmark-s2.json")
    assert result.exit_code == 2 and "hunter2" not in result.stderr and "bob:***@" in result.stderr


@pytest.mark.parametrize(("field", "name"), [("tile_graph_name", "ExtractS2Bandz"),
                                             ("scene_graph_name", "CopyProductToStorag")])
def test_misspelt_graph_names_are_input_errors_before_any_search(cli, repo, tmp_path, field, name):
    payload = json.loads((repo / "payloads" / "denmark-s2.json").read_text())
    payload[field] = name
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    for command in (["scenes", path], ["tiles", path]):
        result = cli(*command)  # the catalogue URL is a closed port: reaching it would be exit 1
        assert result.exit_code == 2, result.stderr
        assert f"field '{field}': graph '{name}' not found" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_passwords_written_into_endpoint_urls_never_reach_messages(httpserver):
    from ingester.errors import AuthError, HTTPError
    from ingester.http import Service, TokenManager

    httpserver.expect_request("/odata/v1/Products").respond_with_json({"detail": "nope"}, status=400)
    httpserver.expect_request("/token").respond_with_json({"error": "invalid_grant"}, status=401)
    base = httpserver.url_for("/").replace("http://", "http://bob:hunter2@").rstrip("/")
    with pytest.raises(HTTPError) as caught:
        Service("cdse", f"{base}/odata/v1", retries=0).get_json("Products")
    assert "hunter2" not in str(caught.value) and "bob:***@" in str(caught.value)
    with pytest.raises(AuthError) as refused:
        TokenManager(f"{base}/token", "user", "pw").access_token()
    assert "hunter2" not in str(refused.value)
