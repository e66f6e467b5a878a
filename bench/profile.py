"""Optional: where does fetcher's own time go? Profiles one W1-style refresh
(HTML sources only by default: the case furthest from the floor) with py-spy,
the main process and the extraction workers alike, and prints the top frames.

    python -m bench.profile --py-spy /path/to/py-spy [--sources 2000] [--hosts 40] [--with-pdfs]

py-spy is not a project dependency: `pip download py-spy` and unpack the wheel
anywhere (its `py-spy` binary is in the wheel's .data/scripts). Writes
bench/profile-<kind>.txt (collapsed stacks, ~1.5 MB: do not commit it) and prints a summary by process.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import workload
from bench.run import OriginProcess, ROOT, write_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--py-spy", required=True)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--with-pdfs", action="store_true")
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()
    corpus = workload.load_corpus()
    sources = workload.mixed(corpus, args.sources, args.hosts)
    if not args.with_pdfs:
        sources = [s for s in sources if s.doc.kind == "html"]
    origin = OriginProcess("mixed", args.sources, args.hosts, 0.1)
    kind = "mixed" if args.with_pdfs else "html"
    out = Path(__file__).resolve().parent / f"profile-{kind}.txt"
    try:
        with tempfile.TemporaryDirectory(prefix="fetcher-profile-") as work:
            urls = [workload.url_of(s, origin.port) for s in sources]
            config = write_config(Path(work), urls, args.hosts)
            command = [args.py_spy, "record", "--subprocesses", "--rate", str(args.rate), "--format", "raw",
                       "--output", str(out), "--", sys.executable, "-m", "fetcher", "--config", str(config),
                       "refresh", "--all", "--json"]
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    finally:
        origin.stop()
    summarise(out)


def summarise(path: Path, top: int = 25) -> None:
    """Samples per process, then the hottest own-frames and inclusive frames of fetcher code."""
    per_process, own, inclusive = collections.Counter(), collections.Counter(), collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        # py-spy --subprocesses: frame 0 is the root process, frame 1 the child's when it is one
        child = len(frames) > 1 and frames[1].startswith("process ")
        per_process["extraction worker" if child and "spawn_main" in frames[1] else
                    "other child" if child else "fetcher main process"] += n
        if len(frames) > 1:
            own[frames[-1][:140]] += n
            for frame in set(frames[1:]):
                if "fetcher/" in frame or "concurrent/futures" in frame or "store" in frame:
                    inclusive[frame[:140]] += n
    total = sum(per_process.values())
    print(f"{total} samples")
    for name, n in per_process.most_common(10):
        print(f"{n / total:6.1%}  {name}")
    print("\nhottest own frames:")
    for name, n in own.most_common(top):
        print(f"{n / total:6.1%}  {name}")
    print("\nfetcher frames, inclusive:")
    for name, n in inclusive.most_common(top):
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
