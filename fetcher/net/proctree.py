"""The browser's processes, read from /proc (Linux): which of our descendants are
Chromium's, how much memory they hold together, and killing them. No library:
psutil is not a dependency, and /proc is all this needs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BROWSER_NAMES = ("chromium", "chrome", "headless_shell")


def _table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command name, state) for every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        table[int(entry.name)] = (int(ppid), name, state)
    return table


def browser_pids(root: int | None = None) -> list[int]:
    """The live (not zombie) browser processes descending from `root` (default: this process)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _name, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(os.getpid() if root is None else root, []))
    while todo:
        pid = todo.pop()
        _ppid, name, state = table[pid]
        if state != "Z" and name.lower().startswith(BROWSER_NAMES):
            found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def driver_pids() -> list[int]:
    """The live Playwright driver processes (node ... run-driver) descending from this process."""
    table = _table()
    mine, todo = [], [os.getpid()]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _name, state) in table.items():
            if ppid == parent:
                todo.append(pid)
                if state != "Z" and _is_driver(pid):
                    mine.append(pid)
    return sorted(mine)


def _is_driver(pid: int) -> bool:
    try:
        return b"run-driver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def resident_bytes(pids: list[int]) -> int:
    """Resident memory of these processes together: the sum of their PSS (each
    shared page split among the processes sharing it, so Chromium's many
    processes are not counted as each holding its shared libraries), or of
    their RSS (an upper bound) where the kernel has no smaps_rollup."""
    total = 0
    for pid in pids:
        try:
            total += _pss(pid)
        except (OSError, IndexError, ValueError):
            continue
    return total


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except PermissionError:
        pass
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time these processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
