"""What every command shares: the stderr console, --quiet, warnings display, error → exit code."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import sqlite3
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ingester.config import Settings, load_settings
from ingester.errors import EXIT_FAILURE, IngesterError, IngesterWarning, InputError

F = TypeVar("F", bound=Callable[..., Any])

def whole_number(minimum: int | None = None) -> Callable[[Any], int]:
    """A `parser=` for an integer option: `--limit abc` is "'abc' is not a whole number", not a
    validation library's wording; `minimum` is checked here too (typer's `min` is not, with a parser)."""
    def parse(value: Any) -> int:
        text = str(value).strip()
        if not re.fullmatch(r"[-+]?\d+", text):
            raise typer.BadParameter(f"{str(value)!r} is not a whole number")
        number = int(text)
        if minimum is not None and number < minimum:
            raise typer.BadParameter(f"{number} is below {minimum}: give a whole number ≥ {minimum}")
        return number

    return parse


def real_number(minimum: float | None = None) -> Callable[[Any], float]:
    """A `parser=` for a number option (finite; ≥ `minimum` when given), in plain words."""
    def parse(value: Any) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise typer.BadParameter(f"{str(value)!r} is not a number") from None
        if not math.isfinite(number):
            raise typer.BadParameter(f"{str(value)!r} is not a finite number")
        if minimum is not None and number < minimum:
            raise typer.BadParameter(f"{number:g} is below {minimum:g}: give a number ≥ {minimum:g}")
        return number

    return parse


QuietOption = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr (errors still shown).")
JsonOption = typer.Option(False, "--json", help="Print JSON to stdout instead of text.")
DbOption = typer.Option(None, "--db", help="SQLite store (default: $INGESTER_DB or outputs/ingester.db).")


class UI:
    """Human output on stderr. Live progress (bars, spinners) only on a terminal; one-line summaries
    unless --quiet (so that cron mails say what a run did); warnings and errors always. Text is never
    read as rich markup: server messages and paths may contain `[…]`."""

    def __init__(self, quiet: bool = False):
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.interactive = self.err.is_terminal and not quiet

    def info(self, text: str) -> None:
        if not self.quiet:
            self.err.print(text, markup=False)

    def always(self, text: str) -> None:
        """A line shown even with --quiet, without a tag (a row of a table whose columns must stay)."""
        self.err.print(text, markup=False)

    def warn(self, text: str) -> None:
        self._tagged("warning", "yellow", text)

    def error(self, text: str) -> None:
        self._tagged("error", "bold red", text)

    def _tagged(self, tag: str, style: str, text: str) -> None:
        if self.err.is_terminal:
            self.err.print(f"[{style}]{tag}:[/{style}] {escape(text)}", markup=True, highlight=False)
        else:
            print(f"{tag}: {text}", file=sys.stderr)


def _strict(obj: Any) -> Any:
    """NaN and infinities become null: stdout JSON must parse with strict parsers (jq, JSON.parse)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(_strict(obj), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def print_json_stream(items: Iterable[Any], head: str = "", level: int = 0, tail: str = "") -> None:
    """A JSON array on stdout written item by item, as `print_json` writes a whole list (the same
    text), so that a listing of 300,000 rows is never held in memory. `head` and `tail` wrap it (the
    array then sits at nesting `level`)."""
    out = sys.stdout
    pad = "  " * (level + 1)
    out.write(head)
    first = True
    for item in items:
        text = json.dumps(_strict(item), indent=2, ensure_ascii=False, default=str, allow_nan=False)
        out.write(("[\n" if first else ",\n") + "\n".join(pad + line for line in text.split("\n")))
        first = False
    out.write(("[]" if first else "\n" + "  " * level + "]") + tail + "\n")
    out.flush()


def settings(**overrides: Any) -> Settings:
    return load_settings(overrides)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same inode when both exist (symlinks, hard links, `..`),
    else the same path once symlinks are resolved."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_output_over_inputs(output: Path | str | None, inputs: dict[str, Path | str | None],
                              option: str = "--output") -> None:
    """Exit 2 (InputError) when the output path is one of the command's inputs (`ingester scenes p.json
    -o p.json` would replace the payload by its own search result). `inputs` maps a description
    ("payload", "scenes file", "store") to a path; None entries are ignored."""
    if output is None:
        return
    out = Path(output).expanduser()
    for what, path in inputs.items():
        if path is None or str(path) in ("", ":memory:"):
            continue
        if _same_file(out, Path(path).expanduser()):
            raise InputError(f"{option} {output}: is the {what} {path} of this command; refusing to write over "
                             "an input (choose another output file)")


def check_output_file(output: Path | str | None, option: str = "--output") -> None:
    """Exit 2 before any work when the output cannot be written: a folder, under a file, in a folder
    without write permission (`scenes -o DIR` would otherwise search the whole catalogue first)."""
    from ingester.fileio import output_file_problem

    problem = output_file_problem(output) if output is not None else None
    if problem:
        raise InputError(f"{option} {output}: {problem}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (cron's `timeout`, systemd, kill): unwinds like Ctrl-C, so that a run gives its leases
    back, stops its workers and releases the AOI's lock before exiting 143."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _on_sigterm() -> Any:
    """Turn SIGTERM into `Terminated` while a command runs (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _store_path(kwargs: dict[str, Any]) -> str:
    """The store a command works on, for an error message (its --db, else the setting)."""
    try:
        return load_settings({"db": kwargs.get("db")}).db
    except Exception:  # noqa: BLE001 - only wording a message
        return str(kwargs.get("db") or "the store")


def command(fn: F) -> F:
    """Map IngesterError to its exit code with a one-line message; show our warnings on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ui = UI(quiet=bool(kwargs.get("quiet", False)))
        as_json = bool(kwargs.get("as_json") or kwargs.get("json_"))

        def fail(text: str, code: int) -> typer.Exit:
            ui.error(text)
            if as_json:
                print_json({"error": text, "exit_code": code})
            return typer.Exit(code)

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if issubclass(category, IngesterWarning):
                ui.warn(str(message))
            else:
                print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")

        old = warnings.showwarning
        warnings.showwarning = show
        old_term = _on_sigterm()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", IngesterWarning)
                warnings.showwarning = show
                return fn(*args, **kwargs)
        except IngesterError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except sqlite3.Error as exc:  # the store's disk filled up, it became read-only, … (exit 1)
            from ingester.store import store_error

            error = store_error(_store_path(kwargs), exc)
            raise fail(str(error), error.exit_code) from None
        except BrokenPipeError:  # `ingester status X | head -1`: the reader left; say nothing, as CLI tools do
            raise typer.Exit(quiet_broken_pipe()) from None
        except OSError as exc:  # an output path that is a folder, unwritable, on a full disk, …
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}", EXIT_FAILURE) from None
        except Terminated:
            raise fail("terminated; re-run the command (or `ingester run AOI`) to resume",
                       128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            raise fail("interrupted; re-run the command (or `ingester run AOI`) to resume", 130) from None
        finally:
            warnings.showwarning = old
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)

    return wrapper  # type: ignore[return-value]


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for a tool killed by SIGPIPE


def quiet_broken_pipe() -> int:
    """After the reader of stdout went away: point stdout at /dev/null (so that the interpreter's last
    flush does not complain either) and return 141, the code of a command ended by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # (no real file descriptor: a test runner's stream)
        pass
    return EXIT_BROKEN_PIPE


def wants_json(argv: Sequence[str]) -> bool:
    """Whether a command line asks for JSON output (`--json` before any `--`)."""
    args = list(argv)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


class JsonErrorsGroup(TyperGroup):
    """The top-level command group: with `--json`, a usage error (unknown option, bad value, missing
    argument: exit 2) is also printed as `{"error": …, "exit_code": 2}` on stdout, like the errors
    the commands themselves report; the usual message still goes to stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not wants_json(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            print_json({"error": "aborted", "exit_code": 1})
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        except Exception as exc:  # click's (or typer's vendored click's) ClickException: a usage error
            show, message, code = (getattr(exc, "show", None), getattr(exc, "format_message", None),
                                   getattr(exc, "exit_code", None))
            if not (callable(show) and callable(message) and isinstance(code, int)):
                raise
            print_json({"error": message(), "exit_code": code})
            show()
            sys.exit(code)
        sys.exit(code if isinstance(code, int) else 0)
