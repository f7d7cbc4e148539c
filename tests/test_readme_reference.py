"""README's command reference is complete: every command the CLI has, and every option of each, is
described there, and each has help text.

A README paragraph (or list item) is about a command when it holds a code span starting with the command
(`` `list tiles AOI …` ``, `` `aoi` ``); an option is documented when one of its names appears in a paragraph
about its command (so options many commands share are described once, in a paragraph naming them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from ingester.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(command line, click command) of every leaf command of the CLI."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path), command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))
PARAGRAPHS = re.split(r"\n\s*\n|\n(?=- `)", README.read_text(encoding="utf-8"))


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def _about(path: str) -> str:
    """The README paragraphs about one command."""
    span = re.compile(r"`" + re.escape(path) + r"(?=[ `\[])")
    return "\n".join(p for p in PARAGRAPHS if span.search(p))


def test_the_cli_has_the_commands_the_reference_is_checked_against():
    assert {"scenes", "tiles", "aoi", "run", "check", "list tiles", "layers add", "config"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_each_of_its_options_is_in_the_readme_command_reference(path):
    about = _about(path)
    assert about, f"README.md has no paragraph about `{path}` (a code span starting with it)"
    missing = [option.opts[0] for option in _options(COMMANDS[path])
               if not any(re.search(re.escape(name) + r"(?![\w-])", about)
                          for name in (*option.opts, *option.secondary_opts))]
    assert not missing, f"`{path}`: option(s) {', '.join(missing)} not described in README.md's paragraphs about it"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_option_has_help_text(path):
    command = COMMANDS[path]
    assert (command.help or command.short_help or "").strip(), f"`{path}` has no help text"
    without = [o.opts[0] for o in _options(COMMANDS[path]) if not (o.help or "").strip()]
    assert not without, f"`{path}`: option(s) {', '.join(without)} without help text"
