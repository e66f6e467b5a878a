"""Writing a file so that readers see the old one or the new one, never half of
either: a temporary file beside the target, renamed over it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")


def write_atomically(target: Path, write: Callable[[BinaryIO], T], *, public: bool = False, sync: bool = False) -> T:
    """Run write() on a temporary file beside `target`, then rename it into place.

    public: the file gets the target's current mode, or for a new file the mode
    open() would give (0666 less the umask), instead of mkstemp's private 0600.
    sync: fsync before the rename (for files a person edits, like the config)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
