"""Writing a file so that readers see the old one or the new one, never half of
either: a temporary file beside the target, renamed over it. The temporary name
carries the writer's pid, so leftovers of a killed writer can be told from a live
writer's file and removed."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

from fetcher.core.processes import alive

T = TypeVar("T")

# ".<target name>.<writer pid>.<mkstemp's random letters>.tmp"
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")
GRACE_SECONDS = 60  # a dead writer's file younger than this is left (another pid namespace may be writing it)
ABANDONED_SECONDS = 86400  # any temporary file untouched this long is a leftover, whoever wrote it


def write_atomically(target: Path, write: Callable[[BinaryIO], T], *, public: bool = False, sync: bool = False) -> T:
    """Run write() on a temporary file beside `target`, then rename it into place.

    public: the file gets the target's current mode, or for a new file the mode
    open() would give (0666 less the umask), instead of mkstemp's private 0600.
    sync: fsync before the rename (for files a person edits, like the config)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            result = write(out)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        if public:
            os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return result


def remove_stale_temporaries(directories: Iterable[Path], now: float) -> int:
    """Delete the temporary files write_atomically left in `directories` when its
    process was killed: those whose writer's pid is gone (and that are over a
    minute old), and any untouched for a day. Returns how many were removed."""
    removed = 0
    for directory in directories:
        for path in directory.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if _is_leftover(path, now):
                    path.unlink()
                    removed += 1
    return removed


def _is_leftover(path: Path, now: float) -> bool:
    age = now - path.lstat().st_mtime
    if age > ABANDONED_SECONDS:
        return True
    named = _TEMPORARY.match(path.name)
    return named is not None and age > GRACE_SECONDS and not alive(int(named["pid"]))


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it (Linux); 022 where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
