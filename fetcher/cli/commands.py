"""The command line: the only place that prints and exits.

Exit codes: 0 done; 1 a one-off fetch got no usable content, an audit's
--fail-on matched, or the store could not be written (disk full): the run is
recorded as failed; 2 bad input (config, target, store, a file that cannot be
read or written); 3 another refresh holds the store; 130 interrupted (SIGINT or
SIGTERM); 141 the reader of stdout went away (`| head`), after the work was stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO

import click

from fetcher.cli import logs
from fetcher.views.audit import FAIL_ON, build_audit
from fetcher.views.audit_formats import to_csv, to_html, to_json, to_markdown
from fetcher.core.config import LOG_FORMATS, LOG_LEVELS, Config, ConfigError, config_path, load_config
from fetcher.store.files import write_atomically
from fetcher.cli.documents import FoundLink, append_sources, links_in_files, new_sources
from fetcher.store.lock import Busy
from fetcher.core.models import RunSummary, Snapshot, Source
from fetcher.run.refresh import run_once
from fetcher.run.pipeline import FetchOptions, Pipeline, utc_now
from fetcher.views.preview import latest_records, make_preview, record, render_markdown, render_text, status_lines
from fetcher.views.runs import recorded_runs
from fetcher.core.sources import BadURL, find_duplicates, looks_like_resource_id, make_source, resource_id
from fetcher.store.sqlite import Store, StoreError
from fetcher.cli.terminal import RunProgress, print_audit, print_history, print_runs, print_status, print_summary

log = logging.getLogger("fetcher")

EXIT_SOURCE_FAILED = 1
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for `cat big | head`


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class AlreadyRunning(BadInput):
    exit_code = EXIT_BUSY


class RunFailed(BadInput):
    """A problem of our own machine (disk full, store unusable) stopped the run."""

    exit_code = EXIT_RUN_FAILED


class Interrupted(click.ClickException):
    exit_code = EXIT_INTERRUPTED

    def show(self, file: Any = None) -> None:
        click.echo(f"interrupted: {self.format_message()}", err=True)


class ClosedPipe(Exception):
    """stdout's reader went away. Not an OSError, so that click's own handling
    of EPIPE (a silent exit 1) lets it through to main()."""


class _Commands(click.Group):
    """The command group; a closed stdout while parsing (--help, --version) or
    running a command becomes ClosedPipe."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as error:
            raise ClosedPipe() from error

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as error:
            raise ClosedPipe() from error


@dataclass(frozen=True)
class Globals:
    config_path: Path
    log_level: str | None
    log_format: str | None
    log_file: str | None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    metavar="PATH",
    help="Config file (default: $FETCHER_CONFIG, else ./config.toml).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Overrides [log] level (default info).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), help="Overrides [log] format: text or JSON lines.")
@click.option("--log-file", metavar="PATH", help="Overrides [log] file (default: stderr).")
@click.version_option(package_name="fetcher")
@click.pass_context
def cli(
    context: click.Context, config_file: str | None, log_level: str | None, log_format: str | None, log_file: str | None
) -> None:
    """Keep dated, readable previews of the web sources a knowledge base cites."""
    context.obj = Globals(config_path(config_file), log_level, log_format, log_file)


def _config(context: click.Context) -> Config:
    """The validated config; logging set up from it and the command line."""
    options: Globals = context.obj
    try:
        config = load_config(options.config_path)
    except ConfigError as error:
        raise BadInput(str(error)) from error
    try:
        logs.configure(
            options.log_level or config.log.level, options.log_format or config.log.format,
            options.log_file or config.log.file,
        )
    except OSError as error:
        raise BadInput(f"cannot open the log file: {error}") from error
    return config


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run to completion; SIGTERM or SIGINT cancels it cleanly (exit 130)."""

    async def cancellable() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        return await coroutine

    try:
        return asyncio.run(cancellable())
    except asyncio.CancelledError:
        raise Interrupted("stopped by a signal; everything fetched so far is stored") from None
    except StoreError as error:
        raise RunFailed(str(error)) from error


def _run_refresh(make_run: Callable[[asyncio.Event], Coroutine[Any, Any, RunSummary]]) -> RunSummary:
    """Run a refresh. The first SIGTERM or SIGINT stops it gently (no new source
    starts, those in flight get [schedule] shutdown_grace); a second one cancels
    at once. Either way the run is recorded, and the command exits 130."""

    async def stoppable() -> RunSummary:
        task = asyncio.current_task()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                task.cancel()
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        return await make_run(stop)

    try:
        summary = asyncio.run(stoppable())
    except asyncio.CancelledError:
        raise Interrupted("stopped by a signal; everything fetched so far is stored") from None
    except StoreError as error:
        raise RunFailed(str(error)) from error
    if summary.interrupted:
        raise Interrupted(
            f"stopped by a signal after {summary.total} sources; they are stored, the rest are still due"
        )
    return summary


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
    existing = _existing_store(config)
    source = _resolve(target, config, existing)
    if existing is not None:
        existing.close()
    store = _store(config)
    options = FetchOptions(live=not archive_only, archive=not no_archive, recheck_archive=recheck_archive)
    snapshot = _run(_fetch_one(config, store, source, options))
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
@click.option("--all", "everything", is_flag=True, help="Refresh every source, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@_no_archive
@_recheck_archive
@click.pass_context
def refresh(
    context: click.Context, only: tuple[str, ...], everything: bool, as_json: bool, no_archive: bool,
    recheck_archive: bool,
) -> None:
    """Fetch the sources that are due (all with --all, or --only some), concurrently
    and politely, with archived copies standing in for dead pages.

    A source is due when its refresh interval has passed since its last check;
    failing sources are rechecked on a backoff. Exits 0 when the run completed,
    whatever the health of the sources; 3 when another run holds the store."""
    config = _config(context)
    sources = _pick(config, only)
    for first, later in find_duplicates(sources):
        log.warning("%s looks like a duplicate of %s (both are fetched)", later.url, first.url)
    store = _store(config)
    options = FetchOptions(archive=not no_archive, recheck_archive=recheck_archive)
    progress = RunProgress()
    try:
        summary = _run_refresh(
            lambda stop: run_once(
                config, store, sources, trigger="refresh", everything=everything or bool(only), options=options,
                on_start=progress.start, on_done=progress.advance, stop=stop,
            )
        )
    except Busy as error:
        raise AlreadyRunning(str(error)) from error
    finally:
        progress.stop()
    if as_json:
        _print_json(summary.to_dict())
    else:
        print_summary(summary)


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


@cli.command()
@click.option("--run-now", is_flag=True, help="Start one run at once, then keep to the schedule.")
@click.pass_context
def schedule(context: click.Context, run_now: bool) -> None:
    """Run the refresh on the [schedule] cron, in the foreground, until SIGTERM/SIGINT.

    Missed runs are coalesced, runs never overlap (with each other or a cron
    `fetcher refresh`), and on SIGTERM the run in flight gets [schedule]
    shutdown_grace seconds to finish before it is abandoned."""
    from fetcher.run.schedule import Nightly, cron_trigger

    config = _config(context)
    store = _store(config)

    async def job() -> None:
        try:
            summary = await run_once(config, store, list(config.sources), trigger="schedule", stop=nightly.stopping)
        except Busy as error:
            log.warning("run skipped: %s", error)
            return
        except StoreError as error:  # our machine: the run is recorded as failed; the next may fare better
            log.error("run failed: %s", error)
            return
        log.info("run summary: %s", json.dumps(summary.to_dict()), extra={logs.FIELDS: summary.to_dict()})

    nightly = Nightly(cron_trigger(config.schedule.cron, config.schedule.timezone), job, config.schedule.shutdown_grace)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, nightly.stop)
        await nightly.serve(run_now=run_now)

    asyncio.run(serve())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.pass_context
def runs(context: click.Context, as_json: bool, limit: int) -> None:
    """List recorded refresh runs, newest first (no network)."""
    config = _config(context)
    store = _existing_store(config)
    records = recorded_runs(store, limit)
    if as_json:
        _print_json([{**vars(run), "started_at": run.started_at.isoformat(),
                      "finished_at": run.finished_at.isoformat() if run.finished_at else None} for run in records])
    elif records:
        print_runs(records)
    else:
        click.echo("no runs recorded yet")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def status(context: click.Context, as_json: bool) -> None:
    """The last run, the health of the sources and what is due next (no network)."""
    from fetcher.run.schedule import cron_trigger, next_fire

    config = _config(context)
    store = _existing_store(config)
    now = utc_now()
    next_run = next_fire(cron_trigger(config.schedule.cron, config.schedule.timezone), now)
    lines = status_lines(config, store, now, next_run)
    if as_json:
        _print_json(dict(lines))
    else:
        print_status(lines)


@cli.command()
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
    config = _config(context)
    sources = _sources_in(documents) if documents else list(config.sources)
    store = _store(config) if check else _existing_store(config)
    if check:
        try:
            _run_refresh(lambda stop: run_once(config, store, sources, trigger="audit", everything=True, stop=stop))
        except Busy as error:
            raise AlreadyRunning(str(error)) from error
    result = build_audit(config, store, sources)
    if only_broken:
        result = replace(result, rows=[row for row in result.rows if row.state not in ("ok", "unchecked")])
    now = utc_now()
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: to_json(result, now) + "\n",
        "csv": lambda: to_csv(result),
        "markdown": lambda: to_markdown(result, now),
        "html": lambda: to_html(result, now),
    }
    if fmt == "table" and output is None:
        print_audit(result)
    else:
        text = renderers.get(fmt, renderers["markdown"])()
        _write_output(output, lambda out: out.write(text))
    if result.fails(fail_on):
        sys.exit(EXIT_SOURCE_FAILED)


@cli.group()
def sources() -> None:
    """Find sources in documents and add them to the config."""


@sources.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--write", is_flag=True, help="Append the new sources to the config file (default: only list them).")
@click.pass_context
def import_sources(context: click.Context, files: tuple[Path, ...], write: bool) -> None:
    """List the http(s) links in FILES (Markdown/MDX, HTML, CSV, plain URL lists)
    that are not configured yet; with --write, add them to the config as [[sources]]."""
    config = _config(context)
    found = _links_in(files)
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
    try:
        added = append_sources(config.path, fresh)
    except ConfigError as error:
        raise BadInput(str(error)) from error
    click.echo(f"added {added} sources to {config.path}", err=True)


def _links_in(files: Iterable[Path]) -> list[FoundLink]:
    found, problems = links_in_files(list(files))
    if problems:
        raise BadInput(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return found


def _sources_in(documents: Iterable[Path]) -> list[Source]:
    return [make_source(link.url, link.title) for link in _links_in(documents)]


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
    print_history(f"{source.resource_id} {source.url}", rows)


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
    count = _write_output(output, lambda out: _write_records(out, records, fmt))
    if output is not None:
        click.echo(f"wrote {count} sources to {output}", err=True)


def _write_output(output: Path | None, write: Callable[[TextIO], Any]) -> Any:
    """Write to stdout, or atomically to `output` (a temporary file renamed into place)."""
    if output is None:
        return write(sys.stdout)

    def as_text(out: BinaryIO) -> Any:
        text = io.TextIOWrapper(out, encoding="utf-8")
        result = write(text)
        text.flush()
        text.detach()  # the binary file stays open for write_atomically to close
        return result

    try:
        return write_atomically(output, as_text, public=True)
    except OSError as error:
        raise BadInput(f"cannot write {output}: {error.strerror or error}") from error


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
    """Run the CLI. Every way it ends is an exit code and at most one line on
    stderr: a file that cannot be read or written is `error: …` and exit 2; a
    closed stdout ends quietly with 141 (the output was cut short; whatever was
    fetched is stored), as `cat` or `grep` killed by SIGPIPE would."""
    try:
        code = cli.main(prog_name="fetcher", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except (ClosedPipe, BrokenPipeError):
        _stdout_to_devnull()
        sys.exit(EXIT_CLOSED_PIPE)
    except OSError as error:
        click.echo(f"error: {_os_error(error)}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second
    BrokenPipeError ("Exception ignored ...") (the recipe in Python's signal docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _os_error(error: OSError) -> str:
    """`path: Permission denied`, or the error as Python words it."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


if __name__ == "__main__":
    main()
