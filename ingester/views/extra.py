"""The plotting libraries are the optional `maps` extra: a command that draws checks for them first
and is an input error (exit 2) naming the install command when they are missing. Nothing else in
the command line imports them."""

from __future__ import annotations

import importlib

from ingester.errors import InputError

MAPS_INSTALL = "pip install 'ingester[maps]'"
PNG_MODULES = ("matplotlib",)
HTML_MODULES = ("folium", "xstatic.pkg.leaflet")


def require(what: str, modules: tuple[str, ...]) -> None:
    """Raise InputError when one of `modules` cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.split(".")[-1] if name.startswith("xstatic") else name)
    if missing:
        raise InputError(f"{what} needs the optional plotting libraries ({', '.join(missing)} not installed): "
                         f"{MAPS_INSTALL}")


def modules_for(output: str) -> tuple[str, ...]:
    return HTML_MODULES if output.lower().endswith((".html", ".htm")) else PNG_MODULES
