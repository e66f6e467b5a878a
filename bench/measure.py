"""Run one command as a child process and measure it alone: wall time, CPU time
(user + system, of the process and every descendant it waited for, from wait4),
the largest single process's max RSS (wait4's ru_maxrss), and the peak RSS of
the whole process tree (the sum of VmRSS over the process and its live
descendants, sampled every `interval` seconds from /proc), and the CPU time of
the command's own process alone (its last /proc sample: within `interval` of its
end), so the fetcher main process and its extraction workers can be told apart."""

from __future__ import annotations

import compileall
import os
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def bytecode_cached(env: dict[str, str]) -> dict[str, str]:
    """`env` with Python's bytecode cache on, as an installed fetcher has it, even
    where PYTHONDONTWRITEBYTECODE is set: else every start compiles fetcher's
    sources again (~40 ms of a refresh's start, more in each extraction process).
    The interpreter's own cache places stay (no PYTHONPYCACHEPREFIX): the
    standard library's and the installed packages' bytecode is read where
    installing them put it. (Until 2026-12-07 a cache of the run's own took its
    place, so the first measured process of a run compiled every module it
    imported, the standard library and trafilatura's included.)"""
    cached = dict(env)
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    return cached


def warm_bytecode(code: Path) -> None:
    """Compile the fetcher package in the checkout `code` into its __pycache__, as
    installing it would: the first measured start then pays no compilation."""
    compileall.compile_dir(str(code / "fetcher"), quiet=1)


@dataclass
class Measured:
    command: list[str]
    exit_code: int
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    max_rss_single_mb: float  # ru_maxrss: the largest one process of the tree
    peak_rss_tree_mb: float  # sampled sum over the tree
    processes_seen: int
    main_cpu_s: float  # the command's own process, without its children (sampled)
    started_at: float  # time.monotonic() as it was started (the machine's clock: a loopback origin's too)
    stdout: str
    stderr_tail: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("stdout")
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    found += [int(p) for p in handle.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _cpu_s(pid: int) -> float | None:
    """user + system time of one process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class TreeSampler(threading.Thread):
    def __init__(self, root: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_kb = 0
        self.seen: set[int] = set()
        self.root_cpu_s = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids, todo = [], [self.root]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo += _children(pid)
            self.seen.update(pids)
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in pids))
            self.root_cpu_s = _cpu_s(self.root) or self.root_cpu_s
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run(command: list[str], *, cwd: Path | None = None, stdout_file: Path | None = None,
        stderr_file: Path | None = None, env: dict | None = None, timeout: float = 4 * 3600) -> Measured:
    stdout_file = stdout_file or Path(os.devnull)
    stderr_file = stderr_file or Path(os.devnull)
    with open(stdout_file, "wb") as out, open(stderr_file, "wb") as err:
        started, started_at = time.perf_counter(), time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        killer.cancel()
        sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
    text = Path(stdout_file).read_text(errors="replace") if stdout_file != Path(os.devnull) else ""
    tail = Path(stderr_file).read_text(errors="replace")[-2000:] if stderr_file != Path(os.devnull) else ""
    return Measured(
        command=[str(c) for c in command], exit_code=process.returncode, wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime, user_s=usage.ru_utime, sys_s=usage.ru_stime,
        max_rss_single_mb=usage.ru_maxrss / 1024, peak_rss_tree_mb=sampler.peak_kb / 1024,
        processes_seen=len(sampler.seen), main_cpu_s=sampler.root_cpu_s, started_at=started_at, stdout=text,
        stderr_tail=tail,
    )
