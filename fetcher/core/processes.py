"""Is a process still there? (For run records and extractor workers.)"""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` runs; a killed process its parent has not reaped yet (a
    zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
