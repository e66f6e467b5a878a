"""W1 and W2 at the bench's small size (400 sources over 10 loopback hosts,
HTTPS, 50 ms an answer), for one or more checkouts taking turns round by round:

    python -m bench.small_nights [--rounds 5] [--sources 400] [--hosts 10] [--latency 0.05]
        [--code DIR]... [--keep]

Each round, for each checkout: a fresh store, W1 (`refresh --all`, everything
downloaded and extracted), then W2 (night 2 of the same origin: 5% of the pages
changed, the rest answer 304 or the same bytes). Printed: the medians of W1 and
W2 wall time, of W2 ÷ W1 (each round's own ratio) and of W2's CPU. The same
workload and settings as `python -m bench`'s W1-400/W2-400 rows, without the
rest of that run; the place to compare a change to the small night. A first,
unmeasured round fills each checkout's bytecode cache. `--keep` leaves the work
directory (stores, logs, each night's JSON) for a look.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from bench import measure, run, tls, workload


def _night(code: Path, config: Path, work: Path, label: str) -> measure.Measured:
    env = run.measured_env(work, PYTHONPATH=str(code))  # each checkout's bytecode beside its sources
    command = [run.PY, "-m", "fetcher", "--config", str(config), "refresh", "--all", "--json"]
    measured = measure.run(command, cwd=code, stdout_file=work / f"{label}.out", stderr_file=work / f"{label}.log",
                           env=env)
    if measured.exit_code != 0:
        raise SystemExit(f"{label}: fetcher exited {measured.exit_code}: {measured.stderr_tail}")
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small_nights", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sources", type=int, default=400)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--code", type=Path, action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (stores, logs, JSON output)")
    args = parser.parse_args(argv)
    codes = [code.resolve() for code in args.code or [run.ROOT]]
    work = Path(tempfile.mkdtemp(prefix="fetcher-small-nights-"))
    run.NET = run.Net(tls.make(work / "tls", workload.host_ips(args.hosts)))
    sources = workload.mixed(workload.load_corpus(), args.sources, args.hosts)
    origin = run.OriginProcess("mixed", args.sources, args.hosts, args.latency)
    seen: dict[Path, dict[str, list[float]]] = {code: {"w1": [], "w2": [], "ratio": [], "w2_cpu": []}
                                                for code in codes}
    try:
        urls = [workload.url_of(s, origin.port, run.NET.scheme) for s in sources]
        for number in range(-1, args.rounds):  # round -1 fills each checkout's bytecode cache
            for index, code in enumerate(codes):
                directory = work / f"round{number}-{index}"
                config = run.write_config(directory, urls, args.hosts)
                origin.call("/__night/1")
                w1 = _night(code, config, work, f"w1-{number}-{index}")
                origin.call("/__night/2")
                w2 = _night(code, config, work, f"w2-{number}-{index}")
                if not args.keep:
                    shutil.rmtree(directory / "snapshots", ignore_errors=True)
                if number < 0:
                    continue
                figures = seen[code]
                figures["w1"].append(w1.wall_s)
                figures["w2"].append(w2.wall_s)
                figures["ratio"].append(w2.wall_s / w1.wall_s)
                figures["w2_cpu"].append(w2.cpu_s)
                run.log(f"{code}: W1 {w1.wall_s:.2f} s, W2 {w2.wall_s:.2f} s ({w2.wall_s / w1.wall_s:.1%}), "
                        f"W2 CPU {w2.cpu_s:.2f} s ({w2.main_cpu_s:.2f} s main process)")
    finally:
        origin.stop()
        if args.keep:
            run.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"| code | W1 s | W2 s | W2 ÷ W1 | W2 CPU s |  ({args.rounds} rounds, medians)")
    print("| --- | --- | --- | --- | --- |")
    for code, f in seen.items():
        median = {key: statistics.median(values) for key, values in f.items()}
        print(f"| {code} | {median['w1']:.2f} | {median['w2']:.2f} | {median['ratio']:.1%} | {median['w2_cpu']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
