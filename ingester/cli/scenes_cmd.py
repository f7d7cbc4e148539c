"""`ingester scenes PAYLOAD`: search the catalogue and write outputs/scenes.json."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ingester.cli import app
from ingester.cli.common import (
    UI,
    JsonOption,
    QuietOption,
    check_output_file,
    command,
    print_json,
    refuse_output_over_inputs,
    settings,
    whole_number,
)
from ingester.errors import IngesterError, InputError


@app.command("scenes")
@command
def scenes(
    payload: Path = typer.Argument(..., help="Payload file (GeoJSON AOI + period + constellation + graphs …)."),
    page: int | None = typer.Option(None, "--page", min=0, parser=whole_number(0),
                                    help="0-based page (default: the payload's 'page')."),
    limit: int | None = typer.Option(
        None, "--limit", min=0, parser=whole_number(0),
        help="Rows per page of the ordered catalogue result; 0 = every scene (default: the payload's 'limit').",
    ),
    output: Path = typer.Option(Path("outputs/scenes.json"), "-o", "--output", help="Scenes file to write."),
    estimate: bool = typer.Option(
        False, "--estimate", help="OneAtlas (phr, spot): ask what ordering the listed scenes over the AOI would "
        "cost (nothing is ordered): each scene's tags estimatedCost and amountUnit, the file's "
        "globalEstimatedCost and amountUnit, and the account's balance in the summary (also the payload "
        "parameter GetPrice: \"true\")."),
    quiet: bool = QuietOption,
    json_: bool = JsonOption,
) -> None:
    """List the scenes over the payload's AOI and period, and write them to a scenes file.

    The file can be edited by hand and given to `ingester tiles --scenes` or `ingester aoi --scenes`.
    """
    from ingester.catalogue import search
    from ingester.graph.loader import check_payload_graphs
    from ingester.http.clients import Clients
    from ingester.payload import load_payload
    from ingester.scenes import write_scenes

    ui = UI(quiet=quiet)
    started = time.monotonic()
    refuse_output_over_inputs(output, {"payload": payload})
    check_output_file(output)
    loaded = load_payload(payload)
    check_payload_graphs(loaded)
    price_wanted = estimate or loaded.parameters.get("GetPrice", "").strip().lower() == "true"
    if price_wanted and (loaded.constellation not in ("phr", "spot") or loaded.catalogue):
        raise InputError(f"--estimate: {payload}: only OneAtlas scenes (constellation phr or spot) have a price")
    cfg = settings()
    with Clients() as clients:  # one login for the search and the estimate
        if ui.interactive:
            with ui.err.status(f"searching the catalogue for {loaded.name} …"):
                result = search(loaded, cfg, page, limit, clients)
        else:
            result = search(loaded, cfg, page, limit, clients)
        extra: dict = {}
        costs = None
        if price_wanted:
            from ingester.catalogue.oneatlas import apply_estimate
            from ingester.catalogue.oneatlas import estimate as price

            costs = price(result.scenes, cfg, clients=clients) if result.scenes else None
            if costs is not None:
                extra = apply_estimate(result.scenes, costs)
    try:
        write_scenes(output, result.scenes, next_=result.next, extra=extra)
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise InputError(f"--output {output}: not a file path ({exc.strerror})") from None
    except OSError as exc:
        raise IngesterError(f"cannot write {output}: {exc.strerror or exc}") from None
    elapsed = time.monotonic() - started
    summary = {
        "output": str(output),
        "scenes": len(result.scenes),
        "next": result.next,
        "catalogue": result.catalogue,
        "rows": result.rows,
        "pages": result.pages,
        "requests": result.requests,
        "dropped": result.dropped,
        "filters": result.filters,
        "elapsed_seconds": round(elapsed, 3),
    }
    if costs is not None:
        summary["estimate"] = costs.to_json()
    if json_:
        print_json(summary)
    dropped = "".join(f", {n} {reason}" for reason, n in result.dropped.items())
    applied = ", ".join(f"{k}={v}" for k, v in result.filters.items())
    ui.info(f"catalogue filters applied: {applied}; checked again on every scene")
    ui.info(
        f"{len(result.scenes)} scene(s) found → {output} (catalogue {result.catalogue}: {result.rows} row(s), "
        f"{result.pages} page(s), {result.requests} request(s){dropped}); next: {str(result.next).lower()}; "
        f"{elapsed:.1f} s"
    )
    if costs is not None:
        ui.info(f"OneAtlas: {costs.text()} (nothing ordered; `ingester aoi PAYLOAD --order --max-cost N` orders)")
