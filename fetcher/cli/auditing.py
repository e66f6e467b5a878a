"""The commands about the sources themselves: `audit` (which are broken, since
when, and what stands in) and `sources import` (links in documents, added to
the config)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fetcher.cli.inputs import load, no_store
from fetcher.cli.output import write_output
from fetcher.cli.running import run_stoppable
from fetcher.cli.terminal import print_audit
from fetcher.core.errors import BadInput
from fetcher.core.models import Source
from fetcher.core.sources import make_source, resource_id
from fetcher.core.timestamps import utc_now
from fetcher.store.opening import open_existing, open_store
from fetcher.store.sqlite import Store
from fetcher.views.audit import FAIL_ON, Audit, build_audit
from fetcher.views.audit_formats import to_csv, to_html, to_json, to_markdown

if TYPE_CHECKING:  # the document readers (lxml, markdown-it) load only for --from and `sources import`
    from fetcher.cli.documents import FoundLink

log = logging.getLogger("fetcher")

EXIT_FAIL_ON_MATCHED = 1


@click.command()
@click.option("--check", is_flag=True, help="Re-check every source first (live, archive for the broken ones).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown", "html"]), default="table",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.option("--only-broken", is_flag=True, help="Leave out sources that are ok or unchecked.")
@click.option("--fail-on", type=click.Choice(sorted(FAIL_ON)), help="Exit 1 if any source is in that state (or worse).")
@click.option(
    "--from", "documents", multiple=True, type=click.Path(path_type=Path, readable=False), metavar="FILE",
    help="Audit the links in this document (Markdown, MDX, HTML, CSV, URL list) instead of the config (repeatable).",
)
@click.pass_context
def audit(
    context: click.Context, check: bool, fmt: str, output: Path | None, only_broken: bool, fail_on: str | None,
    documents: tuple[Path, ...],
) -> None:
    """Which sources are dead, failing, blocked, soft 404s or moved, since when, and
    which archived copy can stand in. Reads the store (no network) unless --check.

    Exits 1 when --fail-on matches, so CI can gate on it."""
    config = load(context)
    sources = _sources_in(documents) if documents else list(config.sources)
    store: Store | None
    if check:
        from fetcher.run.refresh import run_once  # the fetching machinery, only for --check

        writable = store = open_store(config)
        run_stoppable(lambda stop: run_once(config, writable, sources, trigger="audit", everything=True, stop=stop))
    else:
        store = open_existing(config)
        if store is None:
            click.echo(f"{no_store(config)}: every source is unchecked", err=True)
    result = build_audit(config, store, sources)
    if store is not None:
        store.close()
    if only_broken:
        result = replace(result, rows=[row for row in result.rows if row.state not in ("ok", "unchecked")])
    if fmt == "table" and output is None:
        print_audit(result)
    else:
        text = _renderer(fmt, result)()
        write_output(output, lambda out: out.write(text))
    if result.fails(fail_on):
        sys.exit(EXIT_FAIL_ON_MATCHED)


def _renderer(fmt: str, result: Audit) -> Callable[[], str]:
    """The audit in a file format (markdown for `table` written to a file)."""
    now = utc_now()
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: to_json(result, now) + "\n",
        "csv": lambda: to_csv(result),
        "markdown": lambda: to_markdown(result, now),
        "html": lambda: to_html(result, now),
    }
    return renderers.get(fmt, renderers["markdown"])


@click.group()
def sources() -> None:
    """Find sources in documents and add them to the config."""


@sources.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--write", is_flag=True, help="Append the new sources to the config file (default: only list them).")
@click.option("--include-images", is_flag=True, help="Count Markdown images as sources too (default: left out).")
@click.pass_context
def import_sources(context: click.Context, files: tuple[Path, ...], write: bool, include_images: bool) -> None:
    """List the http(s) links in FILES (Markdown/MDX, HTML, CSV, plain URL lists)
    that are not configured yet; with --write, add them to the config as [[sources]].

    Images are left out unless --include-images; links that are not http(s)
    (mailto:, tel:) and same-document anchors (#section) never count."""
    from fetcher.cli.config_file import append_sources
    from fetcher.cli.documents import new_sources

    config = load(context)
    found = _links_in(files, images=include_images)
    fresh, duplicates = new_sources(found, config.sources)
    for link, configured in duplicates:
        log.warning("%s (%s) looks like a duplicate of the configured %s: not added", link.url, link.where, configured.url)
    for link in fresh:
        click.echo(f"{resource_id(link.url)}  {link.url}" + (f"  {link.title}" if link.title else "") + f"  ({link.where})")
    known = len(found) - len(fresh) - len(duplicates)
    click.echo(f"{len(found)} links: {len(fresh)} new, {known} already configured, {len(duplicates)} likely duplicates",
               err=True)
    if not write:
        if fresh:
            click.echo(f"nothing written: add --write to append them to {config.path}", err=True)
        return
    if config.path is None:  # a config always comes from a file on the command line
        raise BadInput("no config file to add the sources to")
    added = append_sources(config.path, fresh)
    click.echo(f"added {added} sources to {config.path}", err=True)


def _links_in(files: Iterable[Path], *, images: bool = True) -> list[FoundLink]:
    from fetcher.cli.documents import links_in_files

    found, problems = links_in_files(list(files), images=images)
    if problems:
        raise BadInput(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return found


def _sources_in(documents: Iterable[Path]) -> list[Source]:
    return [make_source(link.url, link.title) for link in _links_in(documents)]
