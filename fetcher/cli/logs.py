"""Logging for unattended runs: text or JSON lines, to stderr or a file."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from fetcher.core.timestamps import rfc3339

FIELDS = "fields"  # pass extra={"fields": {...}} to log structured values


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, FIELDS, {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class Text(logging.Formatter):
    _second, _moment = -1, ""  # the last second formatted (a run logs hundreds of lines a second)

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._moment = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{self._moment} {record.levelname.lower():<7} {record.getMessage()}"
        if record.exc_info:  # an internal error on one source: the traceback is for whoever fixes it
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str, fmt: str, file: str | None) -> None:
    logger = logging.getLogger("fetcher")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else Text())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    # Neither format shows where a line was logged from, nor its thread or process:
    # so none of them is looked up for every record (the logging HOWTO's
    # "Optimization"; a run logs a line a source).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
