"""`ingester show`, `filter`, `map` and `timeline`: look at a scenes/tiles file or an AOI before and
after ingesting it. The drawing commands need the `maps` extra; nothing here imports it at load."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ingester.cli import app
from ingester.cli.common import (
    UI,
    DbOption,
    JsonOption,
    QuietOption,
    check_output_file,
    command,
    print_json,
    real_number,
    settings,
)
from ingester.errors import InputError
from ingester.wording import nouns, plural

if TYPE_CHECKING:
    from ingester.views.model import Filters, SceneView, View


class ColorBy(StrEnum):
    date = "date"
    status = "status"


FilePayloadOption = typer.Option(None, "--payload", "-p", help="Payload whose AOI the scenes are measured against "
                                 "(coverage column, --min-coverage): a scenes or tiles file holds no AOI of its own.")
PayloadOption = typer.Option(None, "--payload", "-p", help="Payload whose AOI is drawn and measured "
                             "(a file has none; an AOI in the store uses its own).")
MaxCloudOption = typer.Option(None, "--max-cloud", parser=real_number(),
                              help="Keep scenes with a cloud cover ≤ this percentage "
                              "(scenes without one, such as radar scenes, are kept).")
MinCoverageOption = typer.Option(None, "--min-coverage", parser=real_number(),
                                 help="Keep scenes covering ≥ this percentage of the "
                                 "AOI (needs --payload).")
OrbitOption = typer.Option(None, "--orbit", help="Keep scenes of this relative orbit, S1 track (A44), MGRS tile "
                           "(32UNF) or WRS path[/row]; repeat for several.")
TargetArgument = typer.Argument(..., metavar="FILE|AOI", help="A scenes or tiles file, or the name of an AOI "
                                "in the store (coloured by status).")


def _filters(max_cloud: float | None, min_coverage: float | None, orbits: list[str] | None) -> Filters:
    from ingester.views.model import Filters

    return Filters(max_cloud, min_coverage, tuple(orbits or ()))


def _ranges(numbers: list[int], limit: int = 20) -> str:
    """2, 3, 4, 7 → "2-4, 7"; beyond `limit` groups, the first ones and a count."""
    out: list[str] = []
    values = sorted(set(numbers))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    if len(out) > limit:
        return ", ".join(out[:limit]) + f", … ({len(values)} lines in all)"
    return ", ".join(out) or "none"


def _cells(scene: SceneView, tiles: bool, sep: str) -> list[str]:
    from ingester.views.model import human_size

    def pct(value: float | None, scale: float = 1.0) -> str:
        return "–" if value is None else f"{value * scale:.1f} %"

    cells = [str(scene.line) if scene.line is not None else "–", f"{scene.date:%Y-%m-%d %H:%M}", scene.source_id,
             scene.platform, scene.track, pct(scene.cloud), pct(scene.coverage, 100),
             "–" if scene.online is None else "yes" if scene.online else "no", human_size(scene.size) or "–"]
    if tiles:
        parts = []
        for t in scene.tiles:
            text = t.name
            for arrow, link in (("prev", t.previous), ("ref", t.reference)):
                if link is not None:
                    text += f" {arrow} {link.date:%Y-%m-%d}" + ("" if link.present else " (not in file)")
            parts.append(text)
        cells.append(sep.join(parts) or "–")
    return cells


RICH_ROWS = 300  # beyond, a terminal gets the same columns aligned as plain text (printed at once)
HEADERS = ["line", "date (UTC)", "source id", "platform", "track", "cloud", "AOI covered", "online", "size"]


def _print_table(view: View, rows: list[SceneView]) -> None:
    tiles = view.is_tiles_file
    headers = HEADERS + (["tiles (previous / reference)"] if tiles else [])
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if console.is_terminal and len(rows) > RICH_ROWS:  # rich needs about 1 ms a row: align the text here
        right = {"line", "cloud", "AOI covered", "size"}
        cells = [_cells(scene, tiles, "; ") for scene in rows]
        widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]

        def line(values: list[str]) -> str:
            return "  ".join(v.rjust(w) if h in right else v.ljust(w)
                             for v, w, h in zip(values, widths, headers, strict=True)).rstrip() + "\n"

        console.print(line(headers).rstrip(), style="bold", markup=False)
        console.file.writelines(line(c) for c in cells)
        return
    if console.is_terminal:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, title=f"{view.name} ({view.origin})", title_justify="left",
                      pad_edge=False)
        for h in headers:  # the source id and the tiles fold on a narrow terminal; nothing is cut
            table.add_column(h, justify="right" if h in ("line", "cloud", "AOI covered", "size") else "left",
                             no_wrap=h not in ("source id", headers[-1]), overflow="fold",
                             min_width=12 if h == "source id" else None)
        for scene in rows:
            table.add_row(*_cells(scene, tiles, "\n"), end_section=tiles and len(scene.tiles) > 1)
        console.print(table)
        return
    out = sys.stdout
    out.write("\t".join(headers) + "\n")
    out.writelines("\t".join(_cells(scene, tiles, "; ")) + "\n" for scene in rows)


CSV_HEADERS = ["line", "date", "source_id", "platform", "track", "relative_orbit", "cloud_cover", "coverage_percent",
               "online", "size_bytes", "tiles"]


def _print_csv(rows: list[SceneView]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for s in rows:
        tiles = _cells(s, True, "; ")[-1] if s.tiles else ""
        writer.writerow([s.line, s.date.isoformat().replace("+00:00", "Z"), s.source_id, s.platform, s.track,
                         "" if s.orbit is None else s.orbit, "" if s.cloud is None else s.cloud,
                         "" if s.coverage is None else round(100 * s.coverage, 3),
                         "" if s.online is None else str(s.online).lower(), "" if s.size is None else s.size, tiles])


def _summary(ui: UI, view: View, kept: list[SceneView], filters: Filters, file: str, options: str) -> None:
    if not filters.active:
        return
    lines = [s.line for s in view.scenes if s.line is not None]
    kept_index = {s.index for s in kept}
    others = [s for s in view.scenes if s.index not in kept_index]
    kept_lines = [s.line for s in kept if s.line is not None]
    text = (f"{len(kept)} of {plural(len(view.scenes), 'scene')} "
            f"{'matches' if len(kept) == 1 else 'match'} ({filters.describe()})"
            + (f": {nouns(len(set(kept_lines)), 'line')} {_ranges(kept_lines)}" if kept_lines else ""))
    if len(set(lines)) == len(view.scenes) and not others:
        text += "; nothing to delete"
    elif len(set(lines)) == len(view.scenes):
        rest = _ranges([s.line for s in others if s.line])
        text += (f"; the other {len(others)} {'is' if len(others) == 1 else 'are'} on {nouns(len(others), 'line')} "
                 f"{rest}: delete {'that line' if len(others) == 1 else 'those lines'}, or run "
                 f"`ingester filter {file} {options} -o NEW.json`"
                 + ("" if len(others) <= 20 else " (`--lines` lists the matching lines in full)"))
    else:
        text += (f"; this file does not hold one scene per line: `ingester filter {file} {options} -o NEW.json` "
                 "writes the kept scenes, one per line")
    ui.info(text)


def _options_text(filters: Filters, payload: Path | None) -> str:
    parts = []
    if payload is not None:
        parts.append(f"--payload {payload}")
    if filters.max_cloud is not None:
        parts.append(f"--max-cloud {filters.max_cloud:g}")
    if filters.min_coverage is not None:
        parts.append(f"--min-coverage {filters.min_coverage:g}")
    parts += [f"--orbit {o}" for o in filters.orbits]
    return " ".join(parts)


@app.command("show")
@command
def show_command(
    file: Path = typer.Argument(..., help="A scenes or tiles file (outputs/scenes.json, outputs/tiles.json, …)."),
    payload: Path | None = FilePayloadOption,
    sort: str = typer.Option("line", "--sort", help="Order by: line, date, source, platform, track, cloud, "
                             "coverage, online, size (scenes without a value last)."),
    reverse: bool = typer.Option(False, "--reverse", help="Descending order."),
    max_cloud: float | None = MaxCloudOption,
    min_coverage: float | None = MinCoverageOption,
    orbit: list[str] | None = OrbitOption,
    as_json: bool = JsonOption,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV to stdout."),
    lines: bool = typer.Option(False, "--lines", help="Print only the line numbers of the matching scenes."),
    quiet: bool = QuietOption,
) -> None:
    """One row per scene of a scenes or tiles file: its line in the file, date, source id, platform, track
    (relative orbit, MGRS tile or WRS path/row), cloud cover, share of the AOI it covers (geodesic; needs
    --payload), online, size, and for a tiles file its tiles with their previous/reference dates.

    With filters, the matching scenes are listed and stderr names the lines of the others: deleting those
    lines (or `ingester filter`) keeps the matching ones. A table on a terminal, tab-separated text
    otherwise; --json or --csv for scripts."""
    from ingester.views.model import from_file, select, sort_scenes
    from ingester.views.source import payload_aoi

    if sum((as_json, as_csv, lines)) > 1:
        raise InputError("give at most one of --json, --csv, --lines")
    ui = UI(quiet)
    filters = _filters(max_cloud, min_coverage, orbit)
    view = from_file(file, payload_aoi(payload))
    filters.check(view)
    kept = select(view.scenes, filters)
    rows = sort_scenes(kept, sort, reverse)
    if as_json:
        print_json([s.to_json() for s in rows])
    elif as_csv:
        _print_csv(rows)
    elif lines:
        sys.stdout.write("".join(f"{s.line}\n" for s in rows if s.line is not None))
    else:
        _print_table(view, rows)
    _summary(ui, view, kept, filters, str(file), _options_text(filters, payload))


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


@app.command("filter")
@command
def filter_command(
    file: Path = typer.Argument(..., help="A scenes or tiles file."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write the kept scenes to (not FILE itself)."),
    payload: Path | None = FilePayloadOption,
    max_cloud: float | None = MaxCloudOption,
    min_coverage: float | None = MinCoverageOption,
    orbit: list[str] | None = OrbitOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the scenes of FILE that pass the filters to a new file, in the same format and each one as it was:
    the same result as deleting the other scenes' lines by hand (written atomically). Warns about tiles whose
    previous or reference scene is left out: `ingester aoi --tiles` refuses them unless that scene is already
    in the AOI (re-run `ingester tiles --scenes` on the result to chain them anew)."""
    from ingester.fileio import atomic_write_text
    from ingester.scenes import dumps_scenes
    from ingester.views.model import broken_links, from_file, kept_document, select
    from ingester.views.source import payload_aoi

    ui = UI(quiet)
    filters = _filters(max_cloud, min_coverage, orbit)
    if not filters.active:
        raise InputError("nothing to filter: give --max-cloud, --min-coverage and/or --orbit")
    if same_file(file, output):
        raise InputError(f"--output {output}: is the input file; write the kept scenes to another file")
    check_output_file(output)
    view = from_file(file, payload_aoi(payload))
    filters.check(view)
    kept = select(view.scenes, filters)
    atomic_write_text(output, dumps_scenes(kept_document(view, kept)))
    for problem in broken_links(view, kept):
        ui.warn(f"{output}: {problem}")
    if not kept:
        ui.warn(f"{output}: no scene passed the filters ({filters.describe()}); the file lists none")
    if as_json:
        print_json({"output": str(output), "kept": len(kept), "scenes": len(view.scenes),
                    "lines": [s.line for s in kept]})
    ui.info(f"kept {len(kept)} of {plural(len(view.scenes), 'scene')} ({filters.describe()}) → {output}")


def check_map_output(what: str, output: Path, suffixes: tuple[str, ...], target: str | None = None) -> None:
    from ingester.views.extra import modules_for, require

    if output.suffix.lower() not in suffixes:
        raise InputError(f"--output {output}: {what} writes {' or '.join(suffixes)} files (from the name's suffix)")
    if target is not None and same_file(Path(target), output):
        raise InputError(f"--output {output}: is the input file")
    check_output_file(output, "--map" if what == "status --map" else "--output")
    require(f"`ingester {what}`", modules_for(str(output)))


def write_map(view: View, output: Path, color_by: str) -> int:
    """Draw `view` to `output` (PNG or HTML by suffix); the number of footprints drawn."""
    if output.suffix.lower() == ".png":
        from ingester.views.png import render_map_png

        return render_map_png(view, output, color_by).footprints
    from ingester.views.html import render_map_html

    return render_map_html(view, output, color_by)


MAP_SUFFIXES = (".png", ".html", ".htm")


@app.command("map")
@command
def map_command(
    target: str = TargetArgument,
    output: Path = typer.Option(..., "--output", "-o", help="map.png (static, offline) or map.html (interactive, "
                                "self-contained)."),
    payload: Path | None = PayloadOption,
    color_by: ColorBy | None = typer.Option(None, "--color-by", help="date or status (default: status for an AOI "
                                            "in the store, date for a file)."),
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """Footprints on a map: the AOI outline, one polygon per scene (per burst for a tiles file or an S1 AOI)
    coloured by acquisition date or by status, burst ids, a legend and a scale. PNG for mails and
    reports; HTML for a browser, with a popup per footprint (source id, date, cloud, status, message) and a
    layer per status or date."""
    from ingester.views.source import is_file_target, open_view

    check_map_output("map", output, MAP_SUFFIXES, target if is_file_target(target) else None)
    view = open_view(target, payload, settings(db=db).db)
    mode = (color_by.value if color_by else None) or ("status" if view.from_store else "date")
    if mode == "status" and not view.from_store:
        raise InputError(f"--color-by status: {target} is a file, whose scenes have no status yet "
                         "(map an AOI of the store for statuses)")
    n = write_map(view, output, mode)
    UI(quiet).info(f"map of {view.name}: {plural(n, 'footprint')} of {plural(len(view.scenes), 'scene')}, coloured "
                   f"by {mode} → {output}")


@app.command("timeline")
@command
def timeline_command(
    target: str = TargetArgument,
    output: Path = typer.Option(..., "--output", "-o", help="timeline.png to write."),
    payload: Path | None = PayloadOption,
    db: str | None = DbOption,
    quiet: bool = QuietOption,
) -> None:
    """Acquisitions per date and per track (S1 relative orbit, S2 MGRS tile, Landsat path/row), coloured by
    status for an AOI in the store, with previous→next links, chain references and the gaps (intervals
    longer than 1.5 × the track's revisit) that break previous/reference chains."""
    from ingester.views.source import is_file_target, open_view
    from ingester.views.timeline import render_timeline_png

    check_map_output("timeline", output, (".png",), target if is_file_target(target) else None)
    view = open_view(target, payload, settings(db=db).db)
    image = render_timeline_png(view, output)
    UI(quiet).info(f"timeline of {view.name}: {len(view.scenes)} acquisitions on {len(image.rows)} tracks, "
                   f"{len(image.gaps)} gaps → {output}")
