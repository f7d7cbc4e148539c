"""FTP servers: `ftp://host[:port]/path/{SCENE}.zip` patterns with `{KEY}` substitution.

`settings.ftp_patterns` (INGESTER_FTP_PATTERNS) holds patterns separated by `;`, optionally prefixed
by a constellation (`sentinel1=ftp://…`; grammar: `providers.patterns`). Credentials:
INGESTER_FTP_USER / INGESTER_FTP_PASSWORD, else a ~/.netrc entry for the host, else anonymous.
Transfers go to `<name>.part`, resume with `REST` after a dropped connection, and are verified like
every download. Implicit TLS (port 990) is not supported.
"""

from __future__ import annotations

import ftplib
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from ingester.config import Settings, netrc_credentials
from ingester.errors import AuthError, DownloadError, NotFound, ProviderError, Unavailable
from ingester.http.checksums import verify_file
from ingester.naming import format_pattern
from ingester.providers.base import Provider, expected_from_metadata, product_name
from ingester.providers.bucket import scene_constellation
from ingester.providers.patterns import patterns_for
from ingester.scenes import Scene
from ingester.storage import check_name

_BLOCK = 1024 * 1024


FTP_SCHEMES = ("ftp",)


def ftp_patterns(settings: Settings, constellation: str | None) -> list[str]:
    return patterns_for(settings.ftp_patterns, "INGESTER_FTP_PATTERNS", FTP_SCHEMES, constellation)


def _reply(exc: BaseException) -> str:
    return str(exc).strip().replace("\n", " ")[:160]


class FtpProvider(Provider):
    name = "ftp"
    max_resumes = 5

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.ftp_patterns.strip())

    def _credentials(self, host: str) -> tuple[str, str]:
        if self.settings.ftp_user:
            return self.settings.ftp_user, self.settings.ftp_password
        creds = netrc_credentials(f"ftp://{host}")
        return creds if creds else ("anonymous", "anonymous@")

    def may_have(self, scene: Scene) -> bool:
        return bool(ftp_patterns(self.settings, scene_constellation(scene)))

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        constellation = scene_constellation(scene)
        patterns = ftp_patterns(self.settings, constellation)
        if not patterns:
            raise NotFound(f"ftp: no pattern for constellation {constellation or 'unknown'}")
        said = []
        for pattern in patterns:
            url = format_pattern(pattern, name)
            try:
                return self._fetch_one(url, workdir, name, scene)
            except NotFound as exc:
                said.append(str(exc))
        raise NotFound("; ".join(said))

    def _connect(self, host: str, port: int) -> ftplib.FTP:
        ftp = ftplib.FTP(timeout=self.settings.http_timeout)
        try:
            ftp.connect(host, port, timeout=min(self.settings.http_timeout, 5.0) or 5.0)
            if ftp.sock is not None:  # connect() set it; typed optional by ftplib
                ftp.sock.settimeout(self.settings.http_timeout)
            user, password = self._credentials(host)
            ftp.login(user, password)
        except ftplib.error_perm as exc:
            ftp.close()
            raise AuthError(f"ftp: {host}: login refused ({str(exc)[:80]})") from None
        except (OSError, EOFError, ftplib.Error) as exc:
            ftp.close()
            raise Unavailable(f"ftp: {host}:{port}: {type(exc).__name__}: {exc}") from None
        return ftp

    def _fetch_one(self, url: str, workdir: Path, name: str, scene: Scene) -> Path:
        parsed = urlparse(url)
        host, port, path = parsed.hostname or "", parsed.port or 21, unquote(parsed.path)
        base = path.rsplit("/", 1)[-1]
        dest = workdir / (f"{name}.zip" if base.lower().endswith(".zip") else check_name("product file", base))
        part = Path(f"{dest}.part")
        shown = f"ftp://{host}:{port}{path}"
        ftp = self._connect(host, port)
        try:
            try:
                ftp.voidcmd("TYPE I")
                total = ftp.size(path)
            except ftplib.error_perm as exc:
                if str(exc).startswith("550"):
                    raise NotFound(f"ftp: {shown}: not found") from None
                raise DownloadError(f"ftp: {shown}: {exc}") from None
            drops = 0
            while True:
                offset = part.stat().st_size if part.exists() else 0
                if total is not None and offset >= total:
                    break
                before = offset
                try:
                    with open(part, "ab") as out:
                        ftp.retrbinary(f"RETR {path}", out.write, blocksize=_BLOCK, rest=offset or None)
                    break
                except (OSError, EOFError, ftplib.error_temp, ftplib.error_reply) as exc:
                    offset = part.stat().st_size if part.exists() else 0
                    drops = drops + 1 if offset == before else 1
                    if drops > self.max_resumes:
                        raise Unavailable(f"ftp: {shown}: transfer keeps failing ({type(exc).__name__})") from None
                    try:
                        ftp.close()
                    except OSError:
                        pass
                    ftp = self._connect(host, port)
                    ftp.voidcmd("TYPE I")
        except TimeoutError:
            raise Unavailable(f"ftp: {shown}: timeout") from None
        except ftplib.error_perm as exc:  # e.g. 550 during a resumed RETR, REST refused: permanent here
            raise ProviderError(f"ftp: {shown}: the server refused the transfer ({_reply(exc)})") from None
        except ftplib.Error as exc:  # a garbled reply: may pass
            raise Unavailable(f"ftp: {shown}: {type(exc).__name__}: {_reply(exc)}") from None
        finally:
            try:
                ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                ftp.close()
        try:
            verified = verify_file(part, expected_from_metadata(scene.metadata), announced=total)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        verified.path = str(dest)
        self.verified[str(dest)] = verified
        return dest
