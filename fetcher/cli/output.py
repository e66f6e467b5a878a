"""Writing a command's result: JSON on stdout, or a file written atomically."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click

from fetcher.core.errors import BadInput
from fetcher.core.models import RunSummary
from fetcher.store.files import write_atomically


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def print_summary(summary: RunSummary) -> None:
    """The concise end-of-run summary (stdout)."""
    counts = " · ".join(f"{kind} {n}" for kind, n in sorted(summary.counts.items(), key=lambda i: (-i[1], i[0])))
    print(f"{summary.total} sources refreshed in {summary.to_dict()['seconds']}s: {counts or 'none due'}")
    print(
        f"changed {summary.changed} · unchanged {summary.unchanged} · failed {summary.failed}"
        f" · archived copies {summary.archived} · newly failing {summary.newly_failing}"
        f" · recovered {summary.recovered} · not due {summary.not_due}"
    )


def write_output(output: Path | None, write: Callable[[TextIO], Any]) -> Any:
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


def write_records(out: TextIO, records: Iterable[dict[str, Any]], fmt: str) -> int:
    """The records as a JSON array or JSON lines; returns how many were written."""
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
