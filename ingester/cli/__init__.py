"""The `ingester` command line: a thin Typer layer over the library (parse, call, render, exit code).

Each command group lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ingester import __version__
from ingester.cli.common import JsonErrorsGroup

app = typer.Typer(
    name="ingester",
    cls=JsonErrorsGroup,
    help="Find satellite scenes over an area, split them into tiles, download, process and index them.\n\n"
    "Exit codes: 0 success; 1 runtime failure; 2 invalid input; 3 another run holds the AOI's lock; "
    "4 the run finished but some jobs ended FAILED or RETRY (or tiles can never be released; `verify` set jobs "
    "back); 5 the run finished what could run now and some jobs are deferred (run again later); 130 interrupted "
    "(Ctrl-C); 141 the reader of the output went away (`| head`); 143 terminated (SIGTERM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ingester {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """ingester: satellite scenes → tiles → downloads → processing → index."""


# Command modules register themselves on `app` when imported, in the order `--help` lists them:
# the journey first (scenes → tiles → aoi), the views of its files, then layers, monitoring and repair,
# then the index and the settings.
for _module in ("scenes_cmd", "tiles_cmd", "aoi_cmd", "views_cmd", "layers_cmd", "monitor_cmd", "index_cmd",
                "config_cmd"):
    importlib.import_module(f"ingester.cli.{_module}")


def main() -> None:
    from ingester.cli.common import quiet_broken_pipe

    try:
        app()
    except BrokenPipeError:  # (outside a command)
        raise SystemExit(quiet_broken_pipe()) from None
    except SystemExit as exc:  # click ends a broken pipe while printing help or usage with 1: the same 141
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            raise SystemExit(quiet_broken_pipe()) from None
        raise
