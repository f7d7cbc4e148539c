"""OneAtlas search and delivered-zip download against servers that take the bearer token of the API key,
HTTP Basic `APIKEY:<key>` (as the original system sent), or both: the bearer token first, one Basic
retry where it is refused, then the scheme that worked directly; the order API bearer-only; the key
never in a job, a message, an output or the store, never sent outside OneAtlas's origins; a worker
without the key says what it needs."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from ingester import oneatlas
from ingester.config import load_settings
from ingester.errors import AuthError, CatalogueError
from ingester.http import Clients
from ingester.oneatlas_auth import challenge_schemes, refuses_credentials
from ingester.store import Store
from tests.fakes.oneatlas import PHR, FakeOneAtlas, add_scenes, product_zip

AOI = "ToulousePHR"
DB = "outputs/ingester.db"


@pytest.fixture
def fake(monkeypatch):
    with FakeOneAtlas() as server:
        for key, value in {**server.env(), "INGESTER_RETRY_BACKOFF": "0", "INGESTER_ONEATLAS_ORDER_RECHECK": "0.2",
                           "INGESTER_WORKERS": "1"}.items():
            monkeypatch.setenv(key, value)
        yield server


@pytest.fixture
def payload(repo, tmp_path) -> Path:
    return Path(shutil.copy(repo / "payloads" / "toulouse-phr.json", tmp_path / "toulouse-phr.json"))


def schemes(fake: FakeOneAtlas, requests_: list[dict]) -> list[str]:
    """Each request's credentials: `Bearer` (a token the fake issued), `Basic` (exactly APIKEY and the
    key), `none`, or the header itself (anything else is a defect)."""
    tokens = set(fake.issued_tokens())
    out = []
    for r in requests_:
        header = r["authorization"]
        if header is None:
            out.append("none")
        elif header.startswith("Bearer ") and header[7:] in tokens:
            out.append("Bearer")
        elif header == fake.basic_header():
            out.append("Basic")
        else:
            out.append(header)
    return out


def of_kind(fake: FakeOneAtlas, kind: str, since: int = 0) -> list[dict]:
    rows = fake.requests[since:]
    if kind == "search":
        return [r for r in rows if r["path"] == "/api/v2/opensearch"]
    if kind == "download":
        return [r for r in rows if r["path"].endswith("/download")]
    return [r for r in rows if r["path"].startswith(("/api/v1/me", "/api/v1/prices", "/api/v1/orders"))]


def expected(mode: str, count: int) -> list[str]:
    """What a server taking `mode` receives for `count` requests of one process."""
    if mode == "basic":
        return ["Bearer", "Basic"] + ["Basic"] * (count - 1)
    return ["Bearer"] * count


def secrets_of(fake: FakeOneAtlas) -> list[bytes]:
    """The key, and the Basic credentials that carry it."""
    return [fake.api_key.encode(), fake.basic_header()[len("Basic "):].encode()]


@pytest.mark.parametrize(("search_mode", "download_mode", "refusal", "challenge"), [
    ("bearer", "bearer", 401, True),
    ("basic", "basic", 401, True),
    ("basic", "basic", 403, True),     # a 403 saying the Authorization header is not accepted
    ("both", "both", 401, True),
    ("basic", "bearer", 401, True),    # one scheme per service
    ("bearer", "basic", 401, False),   # a bare 401, without the challenge RFC 9110 asks for
])
def test_scenes_and_an_ordered_aoi_work_with_the_scheme_each_service_takes(
        cli, fake, payload, tmp_path, capfd, search_mode, download_mode, refusal, challenge):
    fake.modes.update(search=search_mode, download=download_mode)
    fake.refusal, fake.challenge, fake.page_limit = refusal, challenge, 1  # one row a page: 2 search requests
    add_scenes(fake, 2)

    r = cli("scenes", payload, "--json")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(Path("outputs/scenes.json").read_text())["features"]) == 2
    assert schemes(fake, of_kind(fake, "search")) == expected(search_mode, 2)
    outputs = [r.stdout, r.stderr]

    since = len(fake.requests)  # a new command: its own clients, nothing learnt is kept
    r = cli("aoi", payload, "--order", "--max-cost", "30", "--create-layers", "--max-wait", "60", "--workers", "1")
    assert r.exit_code == 0, r.stderr
    outputs += [r.stdout, r.stderr]
    assert schemes(fake, of_kind(fake, "search", since)) == expected(search_mode, 2)
    assert schemes(fake, of_kind(fake, "download", since)) == expected(download_mode, 2)
    assert set(schemes(fake, of_kind(fake, "order", since))) == {"Bearer"}  # the order API: bearer only
    assert len(fake.orders) == 2
    with Store(DB) as st:
        assert st.one("SELECT count(*) FROM dataset") == 4

    # the key is in no job description, message, output, store or file of the run
    from ingester.coordinator import Coordinator

    settings = load_settings()
    with Store(DB) as st:
        jobs = [Coordinator(st, AOI, settings).scene_job(1, 9), Coordinator(st, AOI, settings).tile_job(1, 9)]
    captured = capfd.readouterr()  # the worker processes' own output too
    blobs = [pickle.dumps(job) for job in jobs] + [repr(job).encode() for job in jobs]
    blobs += [text.encode() for text in (*outputs, captured.out, captured.err)]
    blobs += [f.read_bytes() for f in Path(tmp_path).rglob("*") if f.is_file()]
    for secret in secrets_of(fake):
        assert not any(secret in blob for blob in blobs)


def test_a_worker_without_the_key_says_the_download_wants_basic_auth_and_what_to_set(cli, fake, payload):
    """The run's coordinator holds the key; its worker, like one started elsewhere by a scheduler, has
    none in its own environment: the Basic-only download fails with a message saying so."""
    fake.modes["download"] = "basic"
    add_scenes(fake, 1)
    r = cli("aoi", payload, "--order", "--max-cost", "30", "--create-layers", "--max-wait", "60", "--workers", "1",
            "--scene-worker", "tests.fakes.oneatlas:keyless_scene_job")
    assert r.exit_code == 4, r.stderr
    with Store(DB) as st:
        status, message = st.execute("SELECT status, message FROM scene").fetchone()
    assert status in ("RETRY", "FAILED")
    assert "wants HTTP Basic auth with the OneAtlas API key (user APIKEY)" in message
    assert "this worker has no API key (a job never carries it)" in message
    assert "set INGESTER_ONEATLAS_API_KEY in its environment" in message
    downloads = of_kind(fake, "download")
    assert downloads and set(schemes(fake, downloads)) == {"Bearer"}  # never Basic without a key
    assert not any(secret in (message + r.stderr).encode() for secret in secrets_of(fake))


def test_a_worker_takes_the_key_from_its_own_environment(fake, tmp_path, monkeypatch):
    """A worker's settings never hold the key (http.tokens.worker_settings); its own environment does."""
    from ingester.http import Clients
    from ingester.http.tokens import AccessToken, JobTokens, worker_settings
    from ingester.providers.oneatlas import OneAtlasProvider
    from ingester.scenes import Scene
    from ingester.times import parse_time

    fake.modes["download"] = "basic"
    (item,) = add_scenes(fake, 1, in_workspace=True)
    settings = load_settings()
    with Clients() as coordinator:
        token, expires = oneatlas.login_manager(settings, coordinator).current()
    link = f"{fake.base}/api/v1/items/{item}/download"
    scene = Scene(PHR.format(0, 0), AOI, parse_time("2022-04-10T10:53:44Z"), "POLYGON ((1 43, 2 43, 2 44, 1 43))",
                  metadata={"catalogue": "oneatlas", "uuid": item, "download_link": link})
    job = Clients(JobTokens({"oneatlas": AccessToken("oneatlas", token, expires)}, None))  # a worker's job
    path = OneAtlasProvider(worker_settings(settings), clients=job).fetch(scene, tmp_path)
    assert path.read_bytes() == product_zip("PHR")
    assert schemes(fake, of_kind(fake, "download")) == ["Bearer", "Basic"]
    assert fake.grants == [("api_key", True)]  # the worker logs in nowhere


def test_a_bearer_only_search_with_an_expired_token_renews_it_and_never_sends_the_key(fake):
    """A 401 whose challenge names only Bearer refused the token itself: it is renewed, no Basic is tried."""
    from ingester.catalogue import search
    from ingester.payload import parse_payload

    add_scenes(fake, 1)
    raw = json.loads((Path(__file__).resolve().parent.parent / "payloads" / "toulouse-phr.json").read_text())
    command = Clients()  # the searches of one command share its login and sessions
    search(parse_payload(raw), load_settings(), clients=command)
    fake.revoke_tokens()
    result = search(parse_payload(raw), load_settings(), clients=command)
    assert len(result.scenes) == 1
    assert schemes(fake, of_kind(fake, "search")) == ["Bearer", "Bearer", "Bearer"]
    assert len(fake.grants) == 2

    # a bare 401 (no challenge) to the first search of a command: Basic is tried once, then the renewed
    # token works and is kept; a later expired token is just renewed
    command = Clients()
    fake.challenge = False
    oneatlas.login_manager(load_settings(), command).current()
    fake.revoke_tokens()
    search(parse_payload(raw), load_settings(), clients=command)
    fake.revoke_tokens()
    search(parse_payload(raw), load_settings(), clients=command)
    assert schemes(fake, of_kind(fake, "search"))[3:] == ["Bearer", "Basic", "Bearer", "Bearer", "Bearer"]
    assert len(fake.grants) == 5


def test_a_search_refusing_both_schemes_fails_naming_both(fake, monkeypatch):
    from ingester.catalogue import search
    from ingester.payload import parse_payload

    raw = json.loads((Path(__file__).resolve().parent.parent / "payloads" / "toulouse-phr.json").read_text())
    fake.modes["search"] = "basic"
    monkeypatch.setattr(fake, "_basic_ok", lambda header: False)  # the server takes Basic, but not this key
    with pytest.raises(CatalogueError) as err:
        search(parse_payload(raw), load_settings())
    assert "refused the bearer token and the API key" in str(err.value)
    assert "HTTP Basic auth with the API key: 401" in str(err.value)
    assert schemes(fake, of_kind(fake, "search")) == ["Bearer", "Basic"]
    assert fake.api_key not in str(err.value)


def test_a_403_about_the_account_is_not_retried_with_the_key(fake, tmp_path):
    from ingester.providers.oneatlas import OneAtlasProvider
    from ingester.scenes import Scene
    from ingester.times import parse_time

    (item,) = add_scenes(fake, 1, in_workspace=True)
    fake.forbid_downloads = "Your contract does not cover this product"
    scene = Scene(PHR.format(0, 0), AOI, parse_time("2022-04-10T10:53:44Z"), "POLYGON ((1 43, 2 43, 2 44, 1 43))",
                  metadata={"catalogue": "oneatlas", "uuid": item,
                            "download_link": f"{fake.base}/api/v1/items/{item}/download"})
    with pytest.raises(AuthError, match="answered 403: Your contract does not cover this product"):
        OneAtlasProvider(load_settings()).fetch(scene, tmp_path)
    assert schemes(fake, of_kind(fake, "download")) == ["Bearer"]


class _Recorder:
    """A server on another port of 127.0.0.1 (another origin): records the Authorization headers it gets
    and answers 401 asking for Basic auth."""

    def __init__(self) -> None:
        self.headers: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                recorder.headers.append(self.headers.get("Authorization"))
                body = b'{"message": "credentials required"}'
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="elsewhere"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("how", ["link", "redirect"])
def test_the_key_never_goes_to_another_origin_even_when_it_asks_for_basic(fake, tmp_path, how):
    from ingester.providers.oneatlas import OneAtlasProvider
    from ingester.scenes import Scene
    from ingester.times import parse_time

    other = _Recorder()
    try:
        (item,) = add_scenes(fake, 1, in_workspace=True)
        fake.modes["download"] = "basic"
        path = f"/api/v1/items/{item}/download"
        if how == "redirect":  # a trusted link that redirects to another port of the same host
            fake.download_redirect = other.base
        link = (other.base if how == "link" else fake.base) + path
        scene = Scene(PHR.format(0, 0), AOI, parse_time("2022-04-10T10:53:44Z"), "POLYGON ((1 43, 2 43, 2 44, 1 43))",
                      metadata={"catalogue": "oneatlas", "uuid": item, "download_link": link})
        with pytest.raises(AuthError):
            OneAtlasProvider(load_settings()).fetch(scene, tmp_path)
        assert other.headers and set(other.headers) == {None}
        if how == "redirect":  # the trusted origin got the key; its redirect target never did
            assert "Basic" in schemes(fake, of_kind(fake, "download"))
    finally:
        other.close()


def test_challenges_and_refusals_are_read_as_rfc_9110_and_6750_say():
    assert challenge_schemes('Bearer realm="OneAtlas", error="invalid_token", Basic realm="a, b"') == {"bearer",
                                                                                                       "basic"}
    assert challenge_schemes("Basic realm=OneAtlas") == {"basic"}
    assert challenge_schemes('Bearer error="invalid_token", error_description="The token expired"') == {"bearer"}
    assert challenge_schemes("") == set()

    def answer(status: int, body: dict, challenge: str = "") -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        if challenge:
            response.headers["WWW-Authenticate"] = challenge
        return response

    assert refuses_credentials(answer(401, {}))
    assert refuses_credentials(answer(403, {"message": "Missing Authentication Token"}))
    assert refuses_credentials(answer(403, {"message": "Invalid key=value pair in Authorization header"}))
    assert refuses_credentials(answer(403, {}, 'Basic realm="OneAtlas"'))
    assert not refuses_credentials(answer(403, {}, 'Bearer error="insufficient_scope"'))
    assert not refuses_credentials(answer(403, {"message": "Your contract does not cover this product"}))
    assert not refuses_credentials(answer(404, {"message": "invalid token"}))
