"""Engines: run one step's argument list (never through a shell) in the work folder, with a timeout,
its output appended to the job's log, and the failure classified (docs/graphs.md, "Engines", "Error classification")."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ingester.errors import ProcessingError

TEMPORARY_ERRNOS = {errno.EIO, errno.EBUSY, errno.ECANCELED, errno.ECONNABORTED, errno.ECONNRESET, errno.ENOMEM,
                    errno.EPIPE}
DEFAULT_GPT = "/usr/local/snap/bin/gpt"


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What to run for a step: resolved command file and `name → value` arguments."""

    engine: str
    command: str
    args: dict[str, str]
    workdir: Path
    timeout: float
    envs: tuple[str, ...] = ()
    snap_parallelism: str = "1"
    snap_memory: str = "4G"
    label: str = "step"


def argv_for(inv: Invocation, gpt: str = "gpt", docker: str = "docker", container: str = "") -> list[str]:
    """The argument list of a step (exposed for tests and `--dry-run`-like listings)."""
    if inv.engine == "snap":
        params = [f"-P{k}={v}" for k, v in inv.args.items()]
        return [gpt, inv.command, "-x", "-q", inv.snap_parallelism, f"-J-Xmx{inv.snap_memory}", *params]
    params = [f"--{k}={v}" for k, v in inv.args.items()]
    if inv.engine == "python":
        return [sys.executable, inv.command, *params]
    if inv.engine == "cmd":
        return [inv.command, *params]
    if inv.engine == "docker":
        wd = str(inv.workdir)
        env_opts: list[str] = []
        for item in inv.envs:
            env_opts += ["-e", item]  # KEY=VALUE, or KEY: docker passes the host's value of exactly KEY
        return [docker, "run", "--rm", "--name", container or f"ingester-{uuid.uuid4().hex[:12]}",
                "-v", f"{wd}:{wd}:rw", "-w", wd, *env_opts, inv.command, *params]
    raise ProcessingError(f"unknown engine {inv.engine!r}")


def find_gpt(configured: str = "") -> str | None:
    """SNAP's gpt: settings, $SNAPPATH (the original's variable), PATH, then SNAP's default install."""
    for candidate in (configured, os.environ.get("SNAPPATH", "")):
        if candidate:
            return candidate if (Path(candidate).is_file() and os.access(candidate, os.X_OK)) else None
    return shutil.which("gpt") or (DEFAULT_GPT if os.access(DEFAULT_GPT, os.X_OK) else None)


def classify(lines: Sequence[str], engine: str) -> tuple[str, str]:
    """(kind, last error line) from a failed step's output: kind is fatal, temporary or permanent."""
    kind = "permanent"
    last = ""
    for line in lines:
        text = line.strip()
        if "FATAL ERROR:" in text:
            kind, last = "fatal", text
        elif "TEMPORARY ERROR:" in text:
            kind, last = ("temporary" if kind != "fatal" else kind), text
        elif engine == "python" and ("temporary failure" in text.lower() or "timed out" in text.lower()):
            kind, last = ("temporary" if kind != "fatal" else kind), text
        elif engine == "docker" and "Error response from daemon" in text:
            # image not found / registry throttling or unreachable: may pass (docs/graphs.md, "Error classification")
            lowered = text.lower()
            if any(w in lowered for w in ("not found", "toomanyrequests", "timeout", "connection")):
                kind = "temporary" if kind != "fatal" else kind
            last = text
        elif engine == "snap" and text.startswith("Error:"):
            if "Try again" in text or "Temporary failure" in text:
                kind = "temporary" if kind != "fatal" else kind
            last = text
        elif text.startswith("ERROR:") or "ERROR:" in text or text.startswith("Traceback") or "Error:" in text:
            last = text
    return kind, last


def tail(path: Path, start: int, max_lines: int = 8, max_chars: int = 1200) -> list[str]:
    """The step's output lines (from byte offset `start` of the log), last `max_lines` of them."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    kept = lines[-max_lines:]
    text = "\n".join(kept)
    return text[-max_chars:].splitlines()


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def run_step(inv: Invocation, log_path: Path, gpt: str = "", docker: str = "docker",
             env: Mapping[str, str] | None = None) -> None:
    """Run one step; raise ProcessingError(kind) on failure. Output is appended to `log_path`."""
    container = ""
    if inv.engine == "snap":
        found = find_gpt(gpt)
        if not found:
            raise ProcessingError(
                f"{inv.label}: SNAP's gpt is not installed (looked at INGESTER_SNAP_GPT={gpt!r}, "
                f"$SNAPPATH={os.environ.get('SNAPPATH', '')!r}, gpt on PATH and {DEFAULT_GPT}); install SNAP "
                "or set INGESTER_SNAP_GPT", "permanent")
        gpt = found
    elif inv.engine == "docker":
        found = shutil.which(docker) if not os.path.isabs(docker) else (docker if os.access(docker, os.X_OK) else None)
        if not found:
            raise ProcessingError(f"{inv.label}: docker is not installed ({docker!r} not found; set "
                                  "INGESTER_DOCKER to the docker client)", "permanent")
        docker = found
        container = f"ingester-{uuid.uuid4().hex[:12]}"
    elif inv.engine == "cmd":
        found = inv.command if os.path.sep in inv.command else shutil.which(inv.command)
        if not found or not os.access(found, os.X_OK):
            raise ProcessingError(f"{inv.label}: command {inv.command!r} not found or not executable", "permanent")
        inv = dataclasses.replace(inv, command=found)
    argv = argv_for(inv, gpt or "gpt", docker, container)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        start = log.tell()
        began = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=inv.workdir, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None,
                                    start_new_session=True)
        except OSError as exc:
            kind = "temporary" if exc.errno in TEMPORARY_ERRNOS else "permanent"
            raise ProcessingError(f"{inv.label}: cannot start {argv[0]}: {exc.strerror}", kind) from None
        try:
            code = proc.wait(timeout=inv.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            if container:
                subprocess.run([docker, "rm", "-f", container], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
            log.write(f"\n[ingester] {inv.label} timed out after {inv.timeout:g} s: killed\n".encode())
            raise ProcessingError(f"{inv.label} timed out after {inv.timeout:g} s (config step_timeout)",
                                  "temporary") from None
        except BaseException:
            _kill(proc)
            raise
        log.write(f"[ingester] {inv.label} exit code {code} after {time.monotonic() - began:.1f} s\n".encode())
    if code == 0:
        return
    lines = tail(log_path, start, max_lines=400, max_chars=100_000)
    kind, last = classify(lines, inv.engine)
    shown = tail(log_path, start)
    shown = [x for x in shown if not x.startswith("[ingester]")]
    detail = last or (shown[-1] if shown else "")
    message = f"{inv.label} failed (exit code {code})" + (f": {detail}" if detail else "")
    if shown:
        message += "\n" + "\n".join(shown)
    raise ProcessingError(message, kind)
