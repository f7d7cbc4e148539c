"""Engines: run one step's argument list (never through a shell) in the work folder, with a timeout,
its output appended to the job's log, and the failure classified (docs/graphs.md, "Engines", "Error classification").

Steps never outlive the run. Each starts a session of its own (its own process group, out of reach of
the terminal's Ctrl-C), and while it runs a record `<work>/<aoi>/.steps/<job>-<attempt>.json` holds its
pid and process start time, and those of the worker process that started it (and, written before the
step starts, a random step id that the step and its children carry in their environment). The
coordinator kills the recorded steps when a run stops early (SIGTERM, Ctrl-C, a broken pool), and a run
that takes over an AOI kills those left by a run that died (kill -9): `stop_recorded_steps`, which kills
a process only when both its pid and its start time match the record, or when it carries the step's id
(a recycled pid is never touched). A worker process whose coordinator died kills its step before
exiting (`kill_active_steps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ingester.errors import ProcessingError
from ingester.failures import TRANSIENT_ERRNOS

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
    record: Path | None = None  # where the running step's pid and start time are kept (see the module doc)


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


def step_outcome(lines: Sequence[str], engine: str) -> tuple[str, str]:
    """(outcome, last error line) from a failed step's output: fatal, temporary or error."""
    kind = "error"
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


# --- steps never outlive the run ----------------------------------------------------------------

_ACTIVE: dict[int, tuple[subprocess.Popen, str, str]] = {}  # pid → (process, container, docker client)


def process_start(pid: int) -> float | None:
    """The start time of a live process (seconds since the epoch, as psutil computes it), or None."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ValueError):
        return None


def steps_folder(workdir: str | Path, aoi: str) -> Path:
    """Where the steps of an AOI's running jobs are recorded: `<work>/<aoi>/.steps`."""
    return Path(workdir) / aoi / ".steps"


def step_record_path(job_workdir: str | Path) -> Path:
    """The record of the step a job attempt is running (its work folder is `<work>/<aoi>/<job>`)."""
    wd = Path(job_workdir)
    return wd.parent / ".steps" / f"{wd.name}.json"


STEP_ID_VARIABLE = "INGESTER_STEP_ID"  # in every step's environment (and its children's): finds strays

# --- what a step's environment holds ----------------------------------------------------------------
# A step runs a program of the graph's author: it gets no credential. The ingester downloads, imports and
# stores every file itself, so a step never needs one. Stripped (one list, docs/graphs.md, "Step
# environment"): the variables below by name or prefix, any name containing one of the SECRET_WORDS, and
# the user:password of proxy URLs (the proxy itself is kept). Everything else is inherited: PATH, HOME,
# the locale, TMPDIR, GDAL_*/PROJ_* configuration, SNAP's and Java's, the proxies without credentials.
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GS_OAUTH2_", "OSS_", "SWIFT_", "EARTHDATA_",
                   "PC_SDK_", "CPL_AWS_", "CPL_GS_")
SECRET_NAMES = frozenset({
    "NETRC", "GOOGLE_APPLICATION_CREDENTIALS", "GS_ACCESS_KEY_ID", "GS_SECRET_ACCESS_KEY",
    "GDAL_HTTP_USERPWD", "GDAL_HTTP_BEARER", "GDAL_HTTP_HEADERS", "GDAL_HTTP_HEADER_FILE",
    "SSH_AUTH_SOCK", "KRB5CCNAME", "DOCKER_AUTH_CONFIG",
})  # fmt: skip
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "API_KEY", "APIKEY", "ACCESS_KEY",
                "PRIVATE_KEY", "SUBSCRIPTION_KEY", "USERPWD")
PROXY_NAMES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")


def is_secret_variable(name: str) -> bool:
    """Whether an environment variable is a credential that a graph step must not inherit."""
    upper = name.upper()
    return upper in SECRET_NAMES or upper.startswith(SECRET_PREFIXES) or any(w in upper for w in SECRET_WORDS)


def _without_credentials(url: str) -> str:
    """A proxy URL without its user-info part (`http://bob:pw@proxy:3128` → `http://proxy:3128`)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def step_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a graph step runs with: `base` (the process's by default) without credentials
    (see SECRET_NAMES), GDAL writing no `.aux.xml` side files unless told otherwise."""
    env: dict[str, str] = {}
    for key, value in (os.environ if base is None else base).items():
        if is_secret_variable(key):
            continue
        env[key] = _without_credentials(value) if key.lower() in PROXY_NAMES else value
    env.setdefault("GDAL_PAM_ENABLED", "NO")
    return env


def _write_record(path: Path, step_id: str, inv: Invocation, container: str, docker: str,
                  proc: subprocess.Popen | None = None) -> None:
    """The step's record: written before it starts (with its id, found in its processes' environment
    should its worker die before the pid is known), then again with its pid and start time."""
    from ingester.fileio import atomic_write_text
    from ingester.store import host_name

    me = os.getpid()
    record = {"host": host_name(), "step_id": step_id, "pid": proc.pid if proc else None,
              "start": process_start(proc.pid) if proc else None, "worker_pid": me,
              "worker_start": process_start(me), "label": inv.label, "container": container, "docker": docker,
              "started_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record))


def _processes_of_step(step_id: str) -> list[int]:
    """The live processes whose environment carries this step id (the step, its children, theirs)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(STEP_ID_VARIABLE) == step_id:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _same_process(pid: object, start: object) -> bool:
    """Whether `pid` is alive and is the process that started at `start` (not a recycled pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pid == os.getpid() \
            or not isinstance(start, int | float):
        return False
    now = process_start(pid)
    return now is not None and abs(now - float(start)) < 0.05


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _remove_container(docker: str, container: str) -> None:
    if container and docker:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([docker, "rm", "-f", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False, timeout=60)


def kill_active_steps() -> None:
    """Kill the steps this process started and still runs (its coordinator is gone)."""
    for pid, (_proc, container, docker) in list(_ACTIVE.items()):
        _kill_group(pid)  # not waited for: the thread running the step reaps it, or init does
        _remove_container(docker, container)


def stop_recorded_steps(folder: str | Path) -> list[str]:
    """Kill every step recorded in `folder` that still runs on this host (its worker process first, so
    that it cannot start another step), and delete the records; returns one line per step killed.

    A process is killed only when its pid and start time both match the record. Records of another
    host are left alone (that host's next run handles them)."""
    from ingester.store import host_name

    folder = Path(folder)
    said: list[str] = []
    try:
        records = sorted(folder.glob("*.json"))
    except OSError:
        return said
    for path in records:
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # unreadable (a write cut short): nothing to verify it with
            continue
        if record.get("host") != host_name():
            continue
        killed = []
        if _same_process(record.get("worker_pid"), record.get("worker_start")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(record["worker_pid"], signal.SIGKILL)
                killed.append(f"worker pid {record['worker_pid']}")
        if _same_process(record.get("pid"), record.get("start")):
            _kill_group(record["pid"])
            killed.append(f"step pid {record['pid']} and its process group")
        step_id = record.get("step_id")
        strays = _processes_of_step(step_id) if isinstance(step_id, str) and len(step_id) >= 16 else []
        for pid in strays:  # a step whose pid was not recorded yet, or children that left its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if strays:
            killed.append(f"pid(s) {', '.join(map(str, strays))} of the step")
        if record.get("container"):
            _remove_container(str(record.get("docker") or ""), str(record["container"]))
        if killed:
            said.append(f"{path.stem} ({record.get('label') or 'a graph step'}): killed {' and '.join(killed)}")
        path.unlink(missing_ok=True)
    return said


def _wait(proc: subprocess.Popen, timeout: float | None) -> int:
    """`proc.wait(timeout)`, woken by the kernel when the step ends (a Linux pidfd): with a timeout,
    Python before 3.12 polls with sleeps growing to 50 ms, so a step's end was seen up to 50 ms late."""
    if timeout is None or timeout == float("inf") or not hasattr(os, "pidfd_open"):
        return proc.wait(None if timeout == float("inf") else timeout)
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # already reaped, or a kernel without pidfds
        return proc.wait(timeout)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


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
                "or set INGESTER_SNAP_GPT", "error")
        gpt = found
    elif inv.engine == "docker":
        found = shutil.which(docker) if not os.path.isabs(docker) else (docker if os.access(docker, os.X_OK) else None)
        if not found:
            raise ProcessingError(f"{inv.label}: docker is not installed ({docker!r} not found; set "
                                  "INGESTER_DOCKER to the docker client)", "error")
        docker = found
        container = f"ingester-{uuid.uuid4().hex[:12]}"
    elif inv.engine == "cmd":
        found = inv.command if os.path.sep in inv.command else shutil.which(inv.command)
        if not found or not os.access(found, os.X_OK):
            raise ProcessingError(f"{inv.label}: command {inv.command!r} not found or not executable", "error")
        inv = dataclasses.replace(inv, command=found)
    argv = argv_for(inv, gpt or "gpt", docker, container)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        start = log.tell()
        began = time.monotonic()
        step_id = uuid.uuid4().hex
        step_env = {**step_environment(env), STEP_ID_VARIABLE: step_id}  # never a credential, whatever the caller
        if inv.record is not None:
            _write_record(inv.record, step_id, inv, container, docker)
        try:
            proc = subprocess.Popen(argv, cwd=inv.workdir, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=step_env, start_new_session=True)
        except OSError as exc:
            if inv.record is not None:
                inv.record.unlink(missing_ok=True)
            kind = "temporary" if exc.errno in TRANSIENT_ERRNOS else "error"
            raise ProcessingError(f"{inv.label}: cannot start {argv[0]}: {exc.strerror}", kind) from None
        _ACTIVE[proc.pid] = (proc, container, docker if container else "")
        try:
            if inv.record is not None:
                _write_record(inv.record, step_id, inv, container, docker, proc)
            code = _wait(proc, inv.timeout)
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
            if container:
                _remove_container(docker, container)
            raise
        finally:
            _ACTIVE.pop(proc.pid, None)
            if inv.record is not None:
                inv.record.unlink(missing_ok=True)
        log.write(f"[ingester] {inv.label} exit code {code} after {time.monotonic() - began:.1f} s\n".encode())
    if code == 0:
        return
    lines = tail(log_path, start, max_lines=400, max_chars=100_000)
    kind, last = step_outcome(lines, inv.engine)
    shown = tail(log_path, start)
    shown = [x for x in shown if not x.startswith("[ingester]")]
    detail = last or (shown[-1] if shown else "")
    message = f"{inv.label} failed (exit code {code})" + (f": {detail}" if detail else "")
    if shown:
        message += "\n" + "\n".join(shown)
    raise ProcessingError(message, kind)
