"""The commands that fetch: `fetch` (one source now), `refresh` (the due
sources, once) and `schedule` (the refresh on a cron, in the foreground)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from contextlib import closing
from typing import TYPE_CHECKING

import click

from fetcher.cli import logs
from fetcher.cli.inputs import load, pick, resolve
from fetcher.cli.output import print_json, print_summary
from fetcher.cli.progress import run_progress
from fetcher.cli.running import run_cancellable, run_stoppable
from fetcher.core.config import Config
from fetcher.core.errors import BadInput, Busy, StoreError
from fetcher.core.models import Snapshot, Source
from fetcher.core.sources import find_duplicates
from fetcher.core.timestamps import utc_now
from fetcher.run.options import FetchOptions
from fetcher.store.opening import open_existing, open_store
from fetcher.store.sqlite import Store
from fetcher.views.preview import make_preview, render_text
from fetcher.views.status import due, when

if TYPE_CHECKING:
    from fetcher.run.schedule import Nightly

log = logging.getLogger("fetcher")

EXIT_SOURCE_FAILED = 1

_no_archive = click.option("--no-archive", is_flag=True, help="Never fall back to an archived copy.")
_recheck_archive = click.option(
    "--recheck-archive", is_flag=True, help="Ask the archives again instead of using cached lookups."
)


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the stored snapshot as one JSON object.")
@click.option("--archive-only", is_flag=True, help="Skip the live site: take the archived copy.")
@_no_archive
@_recheck_archive
@click.option("--render/--no-render", "render", default=None,
              help="Render the page in the browser this once, or never; default: when it looks like a client-side app.")
@click.pass_context
def fetch(
    context: click.Context, target: str, as_json: bool, archive_only: bool, no_archive: bool, recheck_archive: bool,
    render: bool | None,
) -> None:
    """Fetch one source now (a resource id or a URL), store it and print its preview.

    When the live page is unusable (dead, erroring, a bot wall), the archived copy
    closest to the last time it was alive stands in. A page that looks like a
    client-side app (little text, mostly script) is rendered in headless Chromium
    when one is installed. Exits 1 when the fetch got no usable content (the
    failure is stored too)."""
    if archive_only and no_archive:
        raise BadInput("--archive-only and --no-archive contradict each other")
    config = load(context)
    if archive_only and not config.archive.enabled:
        raise BadInput(f"--archive-only: no archive is enabled in {config.path} ([archive] enabled = false)")
    existing = open_existing(config)
    source = resolve(target, config, existing, any_url=True)
    if existing is not None:
        existing.close()
    options = FetchOptions(live=not archive_only, archive=not no_archive, recheck_archive=recheck_archive,
                           render=None if render is None else ("always" if render else "never"))
    with closing(open_store(config)) as store:
        snapshot = run_cancellable(_fetch_one(config, store, source, options))
        if as_json:
            print_json(snapshot.to_dict())
        else:
            content = snapshot if snapshot.has_content else store.latest_with_content(source.resource_id)
            click.echo(render_text(make_preview(snapshot, content, config.preview_chars)))
    if not snapshot.has_content:
        sys.exit(EXIT_SOURCE_FAILED)


async def _fetch_one(config: Config, store: Store, source: Source, options: FetchOptions) -> Snapshot:
    from fetcher.run.pipeline import Pipeline  # the engine and its HTTP client: not for a queued refresh

    async with Pipeline(config, store, processes=False) as pipeline:
        return await pipeline.fetch(source, options)


@click.command()
@click.option("--only", "only", multiple=True, metavar="TARGET",
              help="Refresh only this source, a resource id or URL (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Refresh every source, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("--no-wait", is_flag=True,
              help="PostgreSQL store: queue the run for the workers and exit, without following it.")
@_no_archive
@_recheck_archive
@click.pass_context
def refresh(
    context: click.Context, only: tuple[str, ...], everything: bool, as_json: bool, no_wait: bool, no_archive: bool,
    recheck_archive: bool,
) -> None:
    """Fetch the sources that are due (all with --all, or --only some), concurrently
    and politely, with archived copies standing in for dead pages.

    A source is due when its refresh interval has passed since its last check;
    failing sources are rechecked on a backoff. Exits 0 when the run completed,
    whatever the health of the sources; 3 when another run holds the store.

    On a PostgreSQL store ([storage] database) the due sources are queued as one
    run for `fetcher worker`s, and the run's progress is shown until it is done
    (unless --no-wait). On the SQLite store the run is fetched here, in-process."""
    config = load(context)
    sources = _picked(config, only)
    for first, later in find_duplicates(sources):
        log.warning("%s looks like a duplicate of %s (both are fetched)", later.url, first.url)
    if config.database:
        _queued(config, sources, everything or bool(only), as_json, no_wait, no_archive, recheck_archive)
        return
    if no_wait:
        raise BadInput("--no-wait: the SQLite store has no workers; the refresh runs here (drop --no-wait)")
    from fetcher.run.refresh import run_once  # the engine: an in-process run only (~0.1 s of imports)

    options = FetchOptions(archive=not no_archive, recheck_archive=recheck_archive)
    progress = run_progress()
    with closing(open_store(config)) as store:
        try:
            summary = run_stoppable(
                lambda stop: run_once(
                    config, store, sources, trigger="refresh", everything=everything or bool(only), options=options,
                    on_start=progress.start, on_done=progress.advance, stop=stop,
                )
            )
        finally:
            progress.stop()
        if as_json:
            print_json(summary.to_dict())
        else:
            print_summary(summary)
            if summary.total == 0 and not summary.interrupted:
                click.echo(_nothing_due(config, store))


def _queued(config: Config, sources: list[Source], everything: bool, as_json: bool, no_wait: bool,
            no_archive: bool, recheck: bool) -> None:
    """refresh on a PostgreSQL store: queue the run, follow it (fetcher.cli.working)."""
    from fetcher.cli.working import queued_refresh

    summary = queued_refresh(config, sources, everything=everything, archive=not no_archive, recheck=recheck,
                             wait=not no_wait, as_json=as_json)
    if summary is None:
        return
    if as_json:
        print_json(summary.to_dict())
    else:
        print_summary(summary)


def _picked(config: Config, only: tuple[str, ...]) -> list[Source]:
    """The sources to consider: every configured one, or those --only names."""
    if not only:
        return list(config.sources)
    existing = open_existing(config)
    try:
        return pick(config, only, existing)
    finally:
        if existing is not None:
            existing.close()


def _nothing_due(config: Config, store: Store) -> str:
    """Why a run fetched nothing, and when it will."""
    if not config.sources:
        return f"no sources are configured in {config.path}"
    upcoming = due(config, store, utc_now()).next_due
    later = f"the next source is due {when(upcoming)}" if upcoming else "no source is due"
    return f"nothing was due: {later}; `fetcher refresh --all` fetches every source now"


@click.command()
@click.option("--run-now", is_flag=True, help="Start one run at once, then keep to the schedule.")
@click.pass_context
def schedule(context: click.Context, run_now: bool) -> None:
    """Run the refresh on the [schedule] cron, in the foreground, until SIGTERM/SIGINT.

    Missed runs are coalesced, runs never overlap (with each other or a cron
    `fetcher refresh`), and on SIGTERM the run in flight gets [schedule]
    shutdown_grace seconds to finish before it is abandoned. On a PostgreSQL
    store each run is queued for `fetcher worker`s instead of fetched here."""
    from fetcher.run.schedule import Nightly, cron_trigger

    config = load(context)
    if config.database:  # the workers fetch: each run is queued for them
        from fetcher.cli.working import needs_queue, queued_schedule_job

        needs_queue("fetcher schedule on a PostgreSQL store")
        trigger = cron_trigger(config.schedule.cron, config.schedule.timezone)
        _serve(Nightly(trigger, lambda: queued_schedule_job(config), config.schedule.shutdown_grace), run_now)
        return
    from fetcher.run.refresh import run_once

    store = open_store(config)

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
    with closing(store):
        _serve(nightly, run_now)


def _serve(nightly: Nightly, run_now: bool) -> None:
    """Run the scheduler until SIGTERM/SIGINT."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, nightly.stop)
        await nightly.serve(run_now=run_now)

    asyncio.run(serve())
