"""A real FTP server (pyftpdlib, threaded) on 127.0.0.1 serving a folder, with one user."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def ftp_server(root: Path, user: str = "ftpuser", password: str = "ftp-Pa55",
               retr_reply: str | None = None) -> Iterator[dict]:
    """`retr_reply`: answer every RETR with this reply instead of the file (e.g. "550 No such file")."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm="elr")
    stats: dict = {"rest": []}

    class Handler(FTPHandler):
        def ftp_REST(self, line):  # record resume offsets
            stats["rest"].append(line)
            return super().ftp_REST(line)

        def ftp_RETR(self, file):  # noqa: N802
            if retr_reply:
                self.respond(retr_reply)
                return None
            return super().ftp_RETR(file)

    Handler.authorizer = authorizer
    Handler.passive_ports = None
    Handler.auth_failed_timeout = 0  # no 3 s penalty after a refused login
    server = ThreadedFTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    try:
        stats["url"] = f"ftp://127.0.0.1:{server.address[1]}"
        stats["user"], stats["password"] = user, password
        yield stats
    finally:
        server.close_all()
        thread.join(timeout=5)
