"""Exceptions that cross module boundaries (problems of ours, not the web's)."""


class ExtractFailed(Exception):
    """An extraction library could not process a document (translated, cause kept)."""
