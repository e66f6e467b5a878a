"""Every exception of ours, under one root, so the command line can turn any of
them into one `error: …` line and an exit code (fetcher/cli/main.py keeps the
table: the code is looked up by class, the nearest ancestor in it winning).

    FetcherError                         a problem of ours, said in one line
    ├── BadInput                 (2)     the user's input cannot be used
    │   ├── ConfigError                  config.toml (or a write to it) cannot be used
    │   ├── BadURL                       a URL that cannot be fetched  (also a ValueError)
    │   └── BadCron                      not a five-field crontab line (also a ValueError)
    ├── StoreError               (2)     the store cannot be opened or read
    │   └── StoreWriteFailed     (1)     a write failed on our machine (disk full, I/O
    │       │                            error, a corrupt database): the run fails
    │       └── StoreLost        (1)     the connection to the database server broke
    ├── Busy                     (3)     another run holds the store's run lock
    ├── Interrupted            (130)     SIGINT or SIGTERM stopped the command
    ├── Stopped                          the run is stopping: a source's next request
    │   │                                is not started (never reaches the command line)
    │   └── AlreadyFetched               another worker stored the source for this run
    │                                    first: the fetch in hand is rolled back
    ├── ExtractFailed                    an extraction library failed on a document
    ├── UndecodableText                  bytes in no text encoding we can tell (a ValueError)
    └── CdxFormatError                   an archive's CDX answer in no format we know (a ValueError)

The last four become a source's outcome (or end its fetch quietly) inside the
run; were one ever to reach the command line it would exit 1 like any other
FetcherError. Where a ValueError is caught today (a URL, a cron line, a CDX
answer parsed inside a `try` that wraps ValueErrors), the class is a ValueError
too, so the same handlers still catch it.

Stopped is not caught by the run's per-source isolation only because
run/pipeline.py re-raises it (with StoreError) before its `except Exception`.

Defined here rather than in the modules that raise them: the whole tree is in
one place, and core is below every layer, so each layer may raise any of them.
The modules that raised them before import them from here, so their old names
(`fetcher.store.sqlite.StoreError`, `fetcher.store.lock.Busy`, …) still work.

Outside the tree on purpose: exceptions private to one layer (the inflater's
OverCap and Incomplete, caught by the download; the extraction pool's WorkerGone), and
net/connect.PrivateAddressRefused, which must be an httpcore.ConnectError for
httpx to report it as a connection failure."""


class FetcherError(Exception):
    """A problem of ours; str(error) is one line for the user."""


class BadInput(FetcherError):
    """The user's input (an argument, a file, the config) cannot be used."""


class ConfigError(BadInput):
    """The configuration cannot be used; the message is one line for the user."""


class BadURL(BadInput, ValueError):
    """A URL that cannot be fetched."""


class BadCron(BadInput, ValueError):
    """The expression is not a valid five-field crontab line; the message says why."""


class StoreError(FetcherError):
    """The store cannot be opened or used; the message is one line for the user."""


class StoreWriteFailed(StoreError):
    """A write failed for reasons of our machine (disk full, I/O error, a corrupt
    or locked database): the run stops loudly and is recorded as failed."""


class StoreLost(StoreWriteFailed):
    """The connection to the store's database server broke (it stopped, restarted,
    or the network went): a reading command says so in one line, a run stops as
    for a failed write."""


class Busy(FetcherError):
    """Another run holds the lock; the message says which."""


class Interrupted(FetcherError):
    """SIGINT or SIGTERM stopped the command; the message says what was kept."""


class Stopped(FetcherError):
    """The run is stopping: raised instead of starting a new request, so the
    source is left unfinished (no row; it stays due) rather than failed."""


class AlreadyFetched(Stopped):
    """Another worker stored this source for this run first: the fetch in hand is
    rolled back (a run stores each of its sources once)."""


class ExtractFailed(FetcherError):
    """An extraction library could not process a document (translated, cause kept)."""


class UndecodableText(FetcherError, ValueError):
    """The bytes are not text in any encoding we can tell."""


class CdxFormatError(FetcherError, ValueError):
    """The CDX answer is not in a format we know."""
