"""Appending sources to config.toml: a `[[sources]]` table for each new link, added
after the last byte of the file, which is otherwise left exactly as it is (comments,
formatting, line ends), and replaced atomically, only if the result still loads.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path

from fetcher.cli.documents import FoundLink
from fetcher.core.config import ConfigError, load_config, parse_config
from fetcher.store.files import write_atomically

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in value:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def append_sources(config_path: Path, links: list[FoundLink], *, now: datetime | None = None) -> int:
    """Append a [[sources]] table for each link to the end of the config file and return
    how many were added. URLs that are configured already, or repeated, are skipped.
    The existing bytes are kept as they are. The file is replaced atomically, and only
    if the result still loads. Raises ConfigError, with one line, if the config cannot
    be read or written or would stop loading."""
    configured = {source.url for source in load_config(config_path).sources}
    fresh = []
    for link in links:
        if link.url not in configured:
            configured.add(link.url)
            fresh.append(link)
    if not fresh:
        return 0
    target = Path(os.path.realpath(config_path))  # a symlink stays a symlink
    try:
        original = target.read_bytes()
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot read the config file: {error.strerror or error}") from error
    day = (now or datetime.now(timezone.utc)).date().isoformat()
    updated = _appended(original, _sources_block(fresh, day))
    try:
        parse_config(tomllib.loads(updated.decode("utf-8")), config_path)
    except (tomllib.TOMLDecodeError, ConfigError) as error:
        detail = str(error).removeprefix(f"{config_path}: ")
        raise ConfigError(f"{config_path}: adding the sources would break the config: {detail}") from error
    try:
        write_atomically(target, lambda out: out.write(updated), public=True, sync=True)
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot write the config file: {error.strerror or error}") from error
    return len(fresh)


def _appended(original: bytes, block: str) -> bytes:
    """The file's bytes, then one blank line and the block, in the file's line ends."""
    newline = "\r\n" if b"\r\n" in original else "\n"
    if not original or original.endswith((b"\n\n", b"\r\n\r\n")):
        separator = ""
    elif original.endswith(b"\n"):
        separator = "\n"
    else:
        separator = "\n\n"
    return original + (separator + block).replace("\n", newline).encode("utf-8")


def _sources_block(links: list[FoundLink], day: str) -> str:
    """A comment naming the day and the documents, then a [[sources]] table a link."""
    origin = ", ".join(dict.fromkeys(_file_of(link.where) for link in links if link.where))
    comment = f"# added by fetcher sources import on {day}" + (f" from {origin}" if origin else "")
    lines = [_CONTROL.sub("?", comment)]
    for number, link in enumerate(links):
        if number:
            lines.append("")
        lines += ["[[sources]]", f"url = {toml_string(link.url)}"]
        if link.title:
            lines.append(f"title = {toml_string(link.title)}")
    return "\n".join(lines) + "\n"


def _file_of(where: str) -> str:
    """The path part of "path:line"."""
    head, _, tail = where.rpartition(":")
    return head if head and tail.isdigit() else where
