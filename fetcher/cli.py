"""The command line: the only place that prints and exits.

Exit codes: 0 done; 1 a one-off fetch got no usable content; 2 bad input
(config, target, store); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fetcher.config import Config, ConfigError, config_path, load_config
from fetcher.models import RunSummary, Snapshot, Source
from fetcher.pipeline import FetchOptions, Pipeline
from fetcher.report import human_size, latest_records, make_preview, record, render_markdown, render_text
from fetcher.sources import BadURL, find_duplicates, looks_like_resource_id, make_source
from fetcher.store import Store, StoreError

EXIT_SOURCE_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    metavar="PATH",
    help="Config file (default: $FETCHER_CONFIG, else ./config.toml).",
)
@click.version_option(package_name="fetcher")
@click.pass_context
def cli(context: click.Context, config_file: str | None) -> None:
    """Keep dated, readable previews of the web sources a knowledge base cites."""
    context.obj = config_path(config_file)


def _config(context: click.Context) -> Config:
    try:
        return load_config(context.obj)
    except ConfigError as error:
        raise BadInput(str(error)) from error


def _store(config: Config) -> Store:
    """The store, created if missing (for commands that write)."""
    try:
        return Store(config.storage_dir)
    except StoreError as error:
        raise BadInput(str(error)) from error


def _existing_store(config: Config) -> Store | None:
    """The store if there is one (for reading: nothing is created)."""
    try:
        return Store.existing(config.storage_dir)
    except StoreError as error:
        raise BadInput(str(error)) from error


def _resolve(target: str, config: Config, store: Store | None) -> Source:
    """A configured or stored source by resource id, or any http(s) URL."""
    if looks_like_resource_id(target):
        source = config.source_by_id(target)
        url = store.url_of(target) if store and source is None else None
        if source is None and url is None:
            raise BadInput(f"no source with resource id {target} in {config.path} or the store")
        return source or make_source(url)
    try:
        source = make_source(target)
    except BadURL as error:
        raise BadInput(f"{error}; TARGET is a resource id (16 hex digits) or an http(s) URL") from error
    return config.source_by_id(source.resource_id) or source


_no_archive = click.option("--no-archive", is_flag=True, help="Never fall back to an archived copy.")
_recheck_archive = click.option(
    "--recheck-archive", is_flag=True, help="Ask the archives again instead of using cached lookups."
)


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the stored snapshot as one JSON object.")
@click.option("--archive-only", is_flag=True, help="Skip the live site: take the archived copy.")
@_no_archive
@_recheck_archive
@click.pass_context
def fetch(
    context: click.Context, target: str, as_json: bool, archive_only: bool, no_archive: bool, recheck_archive: bool
) -> None:
    """Fetch one source now (a resource id or a URL), store it and print its preview.

    When the live page is unusable (dead, erroring, a bot wall), the archived copy
    closest to the last time it was alive stands in. Exits 1 when the fetch got
    no usable content (the failure is stored too)."""
    if archive_only and no_archive:
        raise BadInput("--archive-only and --no-archive contradict each other")
    config = _config(context)
    source = _resolve(target, config, _existing_store(config))
    store = _store(config)
    options = FetchOptions(live=not archive_only, archive=not no_archive, recheck_archive=recheck_archive)
    snapshot = asyncio.run(_fetch_one(config, store, source, options))
    if as_json:
        _print_json(snapshot.to_dict())
    else:
        content = snapshot if snapshot.has_content else store.latest_with_content(source.resource_id)
        click.echo(render_text(make_preview(snapshot, content, config.preview_chars)))
    if not snapshot.has_content:
        sys.exit(EXIT_SOURCE_FAILED)


async def _fetch_one(config: Config, store: Store, source: Source, options: FetchOptions) -> Snapshot:
    async with Pipeline(config, store, processes=False) as pipeline:
        return await pipeline.fetch(source, options)


@cli.command()
@click.option("--only", "only", multiple=True, metavar="ID", help="Refresh only this resource id (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@_no_archive
@_recheck_archive
@click.pass_context
def refresh(
    context: click.Context, only: tuple[str, ...], as_json: bool, no_archive: bool, recheck_archive: bool
) -> None:
    """Fetch every configured source (or --only some), concurrently and politely,
    with archived copies standing in for dead pages.

    Exits 0 when the run completed, whatever the health of the sources."""
    config = _config(context)
    sources = _pick(config, only)
    for first, later in find_duplicates(sources):
        click.echo(f"warning: {later.url} looks like a duplicate of {first.url} (both are fetched)", err=True)
    store = _store(config)
    options = FetchOptions(archive=not no_archive, recheck_archive=recheck_archive)
    with _progress(len(sources)) as advance:
        summary = asyncio.run(_refresh(config, store, sources, advance, options))
    if as_json:
        _print_json(summary.to_dict())
    else:
        _print_summary(summary)


def _pick(config: Config, only: tuple[str, ...]) -> list[Source]:
    if not only:
        return list(config.sources)
    picked = []
    for wanted in only:
        source = config.source_by_id(wanted)
        if source is None:
            raise BadInput(f"--only {wanted}: no source with that resource id in {config.path}")
        picked.append(source)
    return picked


async def _refresh(
    config: Config, store: Store, sources: list[Source], advance: Callable[[Snapshot], None], options: FetchOptions
) -> RunSummary:
    async with Pipeline(config, store, processes=len(sources) > 1) as pipeline:
        return await pipeline.refresh(sources, on_done=advance, options=options)


class _progress:
    """A rich progress bar on a terminal; a plain line per source otherwise (stderr)."""

    def __init__(self, total: int):
        self._console = Console(stderr=True)
        self._bar = None
        if self._console.is_terminal and total:
            self._bar = Progress(
                TextColumn("refresh"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self._console
            )
            self._task = self._bar.add_task("refresh", total=total)

    def __enter__(self) -> Callable[[Snapshot], None]:
        if self._bar:
            self._bar.start()
        return self._advance

    def __exit__(self, *exc_info: object) -> None:
        if self._bar:
            self._bar.stop()

    def _advance(self, snapshot: Snapshot) -> None:
        if self._bar:
            self._bar.advance(self._task)
            return
        kind = snapshot.live_outcome or snapshot.outcome
        status = snapshot.live_status if snapshot.origin == "archive" else snapshot.http_status
        size = human_size(snapshot.text_chars) if snapshot.has_content else snapshot.detail[:80]
        if snapshot.origin == "archive" and snapshot.has_content:
            size = f"archived copy, {size}"
        click.echo(f"{kind:<16} {status or '-':<4} {snapshot.resource_id} {snapshot.url} ({size})", err=True)


def _print_summary(summary: RunSummary) -> None:
    console = Console()
    table = Table(title=f"{summary.total} sources in {summary.to_dict()['seconds']}s")
    table.add_column("outcome")
    table.add_column("sources", justify="right")
    for kind, count in sorted(summary.counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(kind, str(count))
    console.print(table)
    console.print(
        f"changed {summary.changed} · unchanged {summary.unchanged} · failed {summary.failed}"
        f" · archived copies {summary.archived}"
    )


@cli.command()
@click.argument("target")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True
)
@click.pass_context
def show(context: click.Context, target: str, fmt: str) -> None:
    """Print the latest stored preview of a source (no network)."""
    config = _config(context)
    store = _existing_store(config)
    source = _resolve(target, config, store)
    latest = store.latest(source.resource_id) if store else None
    if latest is None:
        raise BadInput(f"{source.resource_id} ({source.url}) has not been fetched yet: run `fetcher fetch {target}`")
    content = latest if latest.has_content else store.latest_with_content(source.resource_id)
    if fmt == "json":
        _print_json(record(latest, content, config.preview_chars, source.title))
    else:
        preview = make_preview(latest, content, config.preview_chars)
        click.echo(render_markdown(preview) if fmt == "markdown" else render_text(preview))


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def history(context: click.Context, target: str, as_json: bool) -> None:
    """List every stored fetch of a source, newest first (no network)."""
    config = _config(context)
    store = _existing_store(config)
    source = _resolve(target, config, store)
    rows = store.history(source.resource_id) if store else []
    if as_json:
        _print_json([row.to_dict(with_text=False) for row in rows])
        return
    if not rows:
        click.echo(f"{source.resource_id} ({source.url}) has not been fetched yet")
        return
    table = Table(title=f"{source.resource_id} {source.url}")
    for column in ("fetched (UTC)", "origin", "HTTP", "outcome", "text", "change", "sha256"):
        table.add_column(column)
    for row in rows:
        change = "new content" if row.changed else ("unchanged" if row.has_content else "-")
        origin = row.origin
        if row.captured_at:
            origin = f"archive ({row.archive_name}, captured {row.captured_at:%Y-%m-%d})"
        table.add_row(
            row.fetched_at.strftime("%Y-%m-%d %H:%M:%S"),
            origin,
            str(row.http_status or "-"),
            row.outcome if not row.live_outcome or row.live_outcome == row.outcome else f"{row.live_outcome} → {row.outcome}",
            human_size(row.text_chars) if row.has_content else "-",
            change,
            (row.sha256 or "-")[:12],
        )
    Console().print(table)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json", "jsonl"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.pass_context
def export(context: click.Context, fmt: str, output: Path | None) -> None:
    """Write the latest snapshot of every stored source, for a site build (no network)."""
    config = _config(context)
    store = _existing_store(config)
    titles = {s.resource_id: s.title for s in config.sources}
    records = latest_records(store, config.preview_chars, titles) if store else iter(())
    if output is None:
        _write_records(sys.stdout, records, fmt)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as out:
            count = _write_records(out, records, fmt)
        temporary.replace(output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise BadInput(f"cannot write {output}: {error.strerror or error}") from error
    click.echo(f"wrote {count} sources to {output}", err=True)


def _write_records(out: Any, records: Iterable[dict[str, Any]], fmt: str) -> int:
    count = 0
    if fmt == "jsonl":
        for count, item in enumerate(records, start=1):
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
        return count
    out.write("[")
    for count, item in enumerate(records, start=1):
        out.write(("\n" if count == 1 else ",\n") + json.dumps(item, ensure_ascii=False))
    out.write("\n]\n")
    return count


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def main() -> NoReturn:
    try:
        code = cli.main(prog_name="fetcher", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
