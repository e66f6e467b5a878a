"""Exceptions that cross module boundaries (problems of ours, not the web's)."""


class ExtractFailed(Exception):
    """An extraction library could not process a document (translated, cause kept)."""


class Stopped(Exception):
    """The run is stopping: raised instead of starting a new request, so the
    source is left unfinished (no row; it stays due) rather than failed."""
