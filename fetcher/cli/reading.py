"""The commands that read the store and fetch nothing: `show`, `history`,
`export`, `runs` and `status`. They open the store read-only and create
nothing, so they work where the user may only read it. Where nothing has been
stored yet they say so and exit 2 rather than print nothing. They start fast:
nothing here imports what fetching needs, and rich is imported only to draw a table."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import click

from fetcher.cli.inputs import existing_store, load, stored_source
from fetcher.cli.output import print_json, write_output, write_records
from fetcher.core.cron import next_fire
from fetcher.core.errors import BadInput
from fetcher.core.timestamps import rfc3339, utc_now
from fetcher.views.runs import recorded_runs
from fetcher.views.preview import latest_records, make_preview, record, render_markdown, render_text
from fetcher.views.status import status_of


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.pass_context
def runs(context: click.Context, as_json: bool, limit: int) -> None:
    """List recorded refresh runs, newest first (no network)."""
    config = load(context)
    records = recorded_runs(existing_store(config), limit)
    if as_json:
        print_json([{**vars(run), "started_at": rfc3339(run.started_at), "finished_at": rfc3339(run.finished_at)}
                    for run in records])
    elif records:
        from fetcher.cli.terminal import print_runs  # rich, only for a table

        print_runs(records)
    else:
        click.echo("no runs recorded yet")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def status(context: click.Context, as_json: bool) -> None:
    """The last run, the health of the sources and what is due next (no network).

    On a PostgreSQL store also the queued run's progress and the live workers,
    each with the sources it is fetching now."""
    config = load(context)
    store = existing_store(config)
    now = utc_now()
    next_run = next_fire(config.schedule.cron, ZoneInfo(config.schedule.timezone), now)
    result = status_of(config, store, now, next_run)
    lines, fields = result.lines(), result.to_dict()
    if config.database:
        from fetcher.cli.working import workers_status

        more_lines, more_fields = workers_status(config)
        lines, fields = lines + more_lines, {**fields, **more_fields}
    if as_json:
        print_json(fields)
    else:
        from fetcher.cli.terminal import print_status  # rich, only for a table

        print_status(lines)


@click.command()
@click.argument("target")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True
)
@click.pass_context
def show(context: click.Context, target: str, fmt: str) -> None:
    """Print the latest stored preview of a source (no network)."""
    config = load(context)
    source, store = stored_source(config, target)
    latest = store.latest(source.resource_id)
    if latest is None:
        raise BadInput(f"{source.resource_id} ({source.url}) has not been fetched yet: run `fetcher fetch {target}`")
    content = latest if latest.has_content else store.latest_with_content(source.resource_id)
    if fmt == "json":
        print_json(record(latest, content, config.preview_chars, source.title))
    else:
        preview = make_preview(latest, content, config.preview_chars)
        click.echo(render_markdown(preview) if fmt == "markdown" else render_text(preview))


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def history(context: click.Context, target: str, as_json: bool) -> None:
    """List every stored fetch of a source, newest first (no network)."""
    config = load(context)
    source, store = stored_source(config, target)
    rows = store.history(source.resource_id)
    if as_json:
        print_json([row.to_dict(with_text=False) for row in rows])
        return
    if not rows:
        click.echo(f"{source.resource_id} ({source.url}) has not been fetched yet")
        return
    from fetcher.cli.terminal import print_history  # rich, only for a table

    print_history(f"{source.resource_id} {source.url}", rows)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.pass_context
def export(context: click.Context, fmt: str, output: Path | None) -> None:
    """Write the latest snapshot of every stored source, for a site build (no network)."""
    config = load(context)
    store = existing_store(config)
    titles = {s.resource_id: s.title for s in config.sources}
    records = latest_records(store, config.preview_chars, titles)
    count = write_output(output, lambda out: write_records(out, records, fmt))
    if output is not None:
        click.echo(f"wrote {count} sources to {output}", err=True)
