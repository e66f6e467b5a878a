"""`python -m bench [--quick]`: throughput, incremental cost, memory and
extraction quality of `fetcher refresh`, side by side with the extraction floor
and two peers, all on loopback. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unicodedata
import re
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path

from bench import measure, tls, workload

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
CORES = os.cpu_count() or 1

# small: W1 and W2 again at a smaller size (sources, hosts, seconds a response), where fixed
# costs weigh more; at the size and latency issue 13 measured its all-304 night (400, 10, 50 ms)
FULL = {"w1_sources": 2000, "hosts": 40, "w3_sources": 20000, "w4_pages": None, "small": (400, 10, 0.05)}
QUICK = {"w1_sources": 200, "hosts": 8, "w3_sources": 2000, "w4_pages": 30, "small": (100, 4, 0.05)}
SMOKE = {"w1_sources": 20, "hosts": 4, "w3_sources": 40, "w4_pages": 4, "small": (8, 2, 0.05)}  # the test suite's run
W4_HOSTS = 8
# W2 is a few seconds and varies by a few percent from night to night: its figures are
# the median of this many nights, each run on a copy of the store W1 left
W2_NIGHTS = 5

TRAFILATURA_CFG = """[DEFAULT]
DOWNLOAD_TIMEOUT = 30
MAX_FILE_SIZE = 30000000
MIN_FILE_SIZE = 10
# no pause between two rounds of downloads to one host: the same as our per_host_delay = 0
SLEEP_TIME = 0
USER_AGENTS =
COOKIE =
MAX_REDIRECTS = 2
# the benchmark's origins are on loopback, which trafilatura refuses by default
SSRF_PROTECTION = off
INSECURE_SSL_FALLBACK = off
MIN_EXTRACTED_SIZE = 250
MIN_OUTPUT_SIZE = 1
MIN_OUTPUT_COMM_SIZE = 1
MAX_TREE_SIZE =
EXTRACTION_TIMEOUT = 30
MIN_DUPLCHECK_SIZE = 100
MAX_REPETITIONS = 2
EXTENSIVE_DATE_SEARCH = on
EXTERNAL_URLS = off
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the origin ------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """HTTPS with a CA made for the run (the default), or plain HTTP (`--http`)."""

    tls: tls.Files | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def env(self) -> dict | None:
        """The environment of every client process: it trusts the run's CA through SSL_CERT_FILE."""
        return {**os.environ, "SSL_CERT_FILE": str(self.tls.ca)} if self.tls else None


NET = Net()  # set by main()


class OriginProcess:
    """bench.origin in its own process (its CPU is not the fetcher's)."""

    def __init__(self, kind: str, sources: int | None, hosts: int, latency: float):
        command = [PY, "-m", "bench.origin", "--workload", kind, "--sources", str(sources or 0),
                   "--hosts", str(hosts), "--latency", str(latency)]
        if NET.tls:
            command += ["--tls", str(NET.tls.cert.parent)]
        self.latency = latency
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.process.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"origin did not start: {line!r}")
        self.port = int(line.split()[1])
        self.control_host = workload.host_ips(1)[0]

    def call(self, path: str) -> dict:
        url = f"{NET.scheme}://{self.control_host}:{self.port}{path}"
        assert url.startswith(("http://127.", "https://127."))
        handlers: list = [urllib.request.ProxyHandler({})]  # never a proxy
        if NET.tls:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=NET.tls.ca)))
        opener = urllib.request.build_opener(*handlers)
        with opener.open(url, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> dict:
        stats = self.call("/__stats")
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return stats


# -- fetcher -------------------------------------------------------------------------


def fetcher_settings(hosts: int) -> dict:
    return {
        "concurrency": 2 * hosts,  # per-host limit x hosts: politeness, not this, is the cap
        "per_host_concurrency": 2,
        "per_host_delay": 0,
        "connect_timeout": 10,
        "read_timeout": 30,
        "deadline": 60,
        "retries": 2,
        "allow_private_networks": True,  # the bench's origins are on loopback, refused by default
    }


def write_config(directory: Path, urls: list[str], hosts: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[storage]", 'dir = "snapshots"', "", "[fetch]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in fetcher_settings(hosts).items()]
    lines += ["", "[archive]", "enabled = false", ""]  # never the Wayback Machine: loopback only
    for url in urls:
        assert url.startswith(("http://127.", "https://127.")), url
        lines += ["[[sources]]", f"url = {json.dumps(url)}", ""]
    path = directory / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def measured_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment of a measured process: the run's CA (Net.env) and Python's
    bytecode cache on (measure.bytecode_cached)."""
    return measure.bytecode_cached({**(NET.env() or os.environ), **extra})


def run_fetcher(config: Path, work: Path, label: str) -> tuple[measure.Measured, dict]:
    command = [PY, "-m", "fetcher", "--config", str(config), "refresh", "--all", "--json"]
    measured = measure.run(command, cwd=ROOT, stdout_file=work / f"{label}.out", stderr_file=work / f"{label}.log",
                           env=measured_env(work))
    if measured.exit_code != 0:
        raise RuntimeError(f"fetcher {label} exited {measured.exit_code}: {measured.stderr_tail}")
    return measured, json.loads(measured.stdout)


def throughput(measured: measure.Measured, count: int) -> dict:
    return {
        **measured.to_dict(),
        "sources": count,
        "pages_per_s": round(count / measured.wall_s, 2),
    }


# -- floor ---------------------------------------------------------------------------


def json_from(module: str, *args: str) -> dict:
    """Run a bench module in a fresh process and read the JSON it prints."""
    output = subprocess.run([PY, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def doc_costs(kind: str, sources: int | None, hosts: int, as_workers: bool = False) -> dict:
    return json_from("bench.floor", "--workload", kind, "--sources", str(sources or 0), "--hosts", str(hosts),
                     *(["--as-workers"] if as_workers else []))


def measured_floor(count: int, hosts: int, html_only: bool = False) -> dict:
    """bench.parallel_floor: every body extracted once, `cores` processes at a time."""
    return json_from("bench.parallel_floor", "--sources", str(count), "--hosts", str(hosts),
                     *(["--html-only"] if html_only else []))


def mean_costs(before: dict, after: dict) -> dict:
    """Each document's CPU, the mean of two timings (bench.floor run before and after a W1)."""
    return {key: {**cost, "cpu_s": (before[key]["cpu_s"] + cost["cpu_s"]) / 2} for key, cost in after.items()}


def bracketed_floor(sources: list[workload.Source], before: dict, after: dict) -> dict:
    """The floor of `sources` from extract() timed just before and just after the
    run it is set beside, the mean of the two: the machine's speed drifts (here,
    by up to a quarter within 20 minutes), and a floor timed minutes away from its
    run measures that drift as much as the run. Both ends are kept ("timed_s")."""
    found = floor(sources, mean_costs(before, after))
    found["timed_s"] = [floor(sources, before)["floor_s"], floor(sources, after)["floor_s"]]
    return found


def floor(sources: list[workload.Source], costs: dict) -> dict:
    by_kind = Counter()
    for source in sources:
        by_kind[source.doc.kind] += costs[source.doc.key]["cpu_s"]
    total = sum(by_kind.values())
    return {
        "extract_cpu_s": round(total, 3),
        "extract_cpu_html_s": round(by_kind["html"], 3),
        "extract_cpu_pdf_s": round(by_kind["pdf"], 3),
        "cores": CORES,
        "floor_s": round(total / CORES, 3),
        "documents": len(sources),
    }


# -- quality -------------------------------------------------------------------------


def token_scores(found: str, gold: str) -> tuple[float, float, float]:
    """Precision, recall, F1 on whitespace tokens, multiset overlap."""
    ours, theirs = Counter(found.split()), Counter(gold.split())
    common = sum((ours & theirs).values())
    if not common:
        return 0.0, 0.0, 0.0
    precision, recall = common / sum(ours.values()), common / sum(theirs.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def score_pages(texts: dict[str, str], pages: list[workload.Doc]) -> dict:
    rows = [token_scores(texts.get(doc.key) or "", doc.gold) for doc in pages]
    n = len(rows) or 1
    return {
        "documents": len(rows),
        "precision": round(sum(r[0] for r in rows) / n, 4),
        "recall": round(sum(r[1] for r in rows) / n, 4),
        "f1": round(sum(r[2] for r in rows) / n, 4),
        "empty": sum(1 for doc in pages if not (texts.get(doc.key) or "").strip()),
        "f1_below_0_8": sum(1 for r in rows if r[2] < 0.8),
        "worst": sorted(({"id": doc.key, "url": doc.url, "f1": round(r[2], 4), "precision": round(r[0], 4),
                          "recall": round(r[1], 4)} for doc, r in zip(pages, rows) if r[2] < 0.8),
                        key=lambda row: row["f1"]),
    }


def score_pdfs(texts: dict[str, str], pdfs: list[workload.Doc]) -> dict:
    found = total = 0
    missing = []
    for doc in pdfs:
        text = squash(texts.get(doc.key) or "")
        for sentence in doc.sentences:
            total += 1
            if squash(sentence) in text:
                found += 1
            else:
                missing.append(f"{doc.key}: {sentence}")
    return {"sentences": total, "found": found, "missing": missing}


# -- the workloads -------------------------------------------------------------------


def w1_and_w2(sources, origin: OriginProcess, config: Path, costs: dict, work: Path, results: dict,
              size: str, nights: int) -> measure.Measured:
    """W1 (a full refresh into a fresh store), then W2 (night 2) `nights` times (none:
    no W2), each on a copy of the store W1 left, as results["W1" + size] and
    results["W2" + size] (W2's figures are its median night's, by wall time); the
    W1 measurement is returned. `costs` is extract() timed just before W1
    (bench.floor); it is timed again just after, and W1's floor is the mean
    (bracketed_floor)."""
    count, hosts = len(sources), len({s.host for s in sources})
    log(f"W1{size}: fetcher refresh of {count} sources over {hosts} hosts")
    origin.call("/__reset")
    measured, summary = run_fetcher(config, work, f"w1{size}")
    log(f"W1{size} floor: timing extract() on each distinct document again, after W1")
    after = doc_costs("mixed", count, hosts)
    w1_floor = bracketed_floor(sources, costs, after)
    log(f"W1{size} floor: extract() timed once more, with the extraction workers' collector settings")
    as_workers = floor(sources, doc_costs("mixed", count, hosts, as_workers=True))["floor_s"]
    w1_floor["as_workers"] = {"floor_s": as_workers, "plain_floor_s": w1_floor["timed_s"][1]}
    results["W1" + size] = {
        **throughput(measured, count), "hosts": hosts, "pdfs": sum(s.doc.kind == "pdf" for s in sources),
        "summary": summary, "origin": origin.call("/__stats"), "floor": w1_floor,
        "time_over_floor": round(measured.wall_s / w1_floor["floor_s"], 3),
        "time_over_floor_as_workers": round(
            measured.wall_s / w1_floor["floor_s"] * w1_floor["timed_s"][1] / as_workers, 3),
        "cpu_over_extract_cpu": round(measured.cpu_s / w1_floor["extract_cpu_s"], 3),
    }
    log(f"W1{size}: {measured.wall_s:.1f}s wall, {measured.cpu_s:.1f}s CPU, floor {w1_floor['floor_s']:.1f}s")
    if not nights:
        return measured
    log(f"W2{size}: the next night, {nights} times, each on a copy of the store W1 left")
    store, kept = config.parent / "snapshots", work / f"after-w1{size}"
    shutil.copytree(store, kept)
    origin.call("/__night/2")
    runs = []
    for night in range(nights):
        if night:
            shutil.rmtree(store)
            shutil.copytree(kept, store)
        origin.call("/__reset")
        measured2, summary2 = run_fetcher(config, work, f"w2{size}-{night}")
        runs.append((measured2, summary2, origin.call("/__stats")))
        log(f"W2{size}, night {night + 1}: {measured2.wall_s:.2f}s wall")
    shutil.rmtree(kept)
    measured2, summary2, stats2 = sorted(runs, key=lambda n: n[0].wall_s)[len(runs) // 2]  # the median night
    changed = [s for s in sources if s.policy == "changes"]
    results["W2" + size] = {
        **throughput(measured2, count), "summary": summary2, "origin": stats2,
        "nights_wall_s": [round(n[0].wall_s, 3) for n in runs],
        "nights_changed": [n[1]["changed"] for n in runs],  # the same each night: each ran on W1's store
        "policies": dict(Counter(s.policy for s in sources)),
        "floor_changed": floor(changed, mean_costs(costs, after)),
        "wall_over_w1": round(measured2.wall_s / measured.wall_s, 4),
        "cpu_over_w1": round(measured2.cpu_s / measured.cpu_s, 4),
        "timeline": timeline(measured2, stats2, origin.latency, fetcher_settings(hosts)["per_host_concurrency"],
                             measured.wall_s),
    }
    log(f"W2{size}: median {measured2.wall_s:.2f}s wall ({results['W2' + size]['wall_over_w1']:.1%} of W1)")
    origin.call("/__night/1")
    return measured


def timeline(measured: measure.Measured, origin: dict, latency: float, per_host: int, w1_wall: float) -> dict:
    """Where a night's wall time went, by the origin's clock (the machine's): from
    the start to the first request, from there to the last answer sent, and
    after it; and the latency floor of the middle part: the rounds the busiest
    host's requests need (robots.txt first and alone, then `per_host` at a time),
    each `latency` long. What is over that floor, and the parts before and
    after, are fetcher's own time."""
    first, last = origin.get("first_request_at"), origin.get("last_answer_at")
    if first is None or last is None:
        return {}
    busiest = origin["max_requests_per_host"]
    rounds = 1 + math.ceil((busiest - 1) / per_host)
    floor_s = rounds * latency
    return {
        "start_s": round(first - measured.started_at, 3), "fetching_s": round(last - first, 3),
        "exit_s": round(measured.started_at + measured.wall_s - last, 3), "busiest_host_requests": busiest,
        "rounds": rounds, "latency_s": latency, "latency_floor_s": round(floor_s, 3),
        "latency_floor_over_w1": round(floor_s / w1_wall, 4),
    }


def small_size(corpus, plan, work: Path, results: dict, nights: int) -> None:
    """W1 and W2 (`nights` of it) again at the plan's small size (400 sources over 10
    hosts, 50 ms a response, in full): results["W1_small"] and results["W2_small"].
    Its floor is timed here, around W1-400, not taken from the run's start."""
    count, hosts, latency = plan["small"]
    sources = workload.mixed(corpus, count, hosts)
    log("W1_small floor: timing extract() on each distinct document, before W1")
    costs = doc_costs("mixed", count, hosts)
    origin = OriginProcess("mixed", count, hosts, latency)
    try:
        urls = [workload.url_of(s, origin.port, NET.scheme) for s in sources]
        w1_and_w2(sources, origin, write_config(work / "w1-small", urls, hosts), costs, work, results, "_small",
                  nights)
        for key in ("W1_small", "W2_small"):
            if key in results:
                results[key]["latency_s"] = latency
    finally:
        origin.stop()


def w1_w2_and_peers(corpus, plan, work: Path, costs: dict, results: dict, peers: bool, nights: int) -> None:
    count, hosts = plan["w1_sources"], plan["hosts"]
    sources = workload.mixed(corpus, count, hosts)
    origin = OriginProcess("mixed", count, hosts, 0.1)
    try:
        urls = [workload.url_of(s, origin.port, NET.scheme) for s in sources]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        config = write_config(work / "w1", urls, hosts)

        measured = w1_and_w2(sources, origin, config, costs, work, results, "", nights)
        log("W1 floor, measured: every body extracted once, in one process per core")
        w1_floor = results["W1"]["floor"]
        w1_floor["measured"] = measured_floor(count, hosts)
        results["W1"]["time_over_measured_floor"] = round(measured.wall_s / w1_floor["measured"]["wall_s"], 3)
        log(f"W1 floor measured {w1_floor['measured']['wall_s']:.1f}s")

        if not peers:
            return
        results["peers"] = {}
        if importlib.util.find_spec("trafilatura.cli") is None:
            results["peers"]["trafilatura_cli"] = {"skipped": "trafilatura's CLI is not installed"}
        else:
            cfg = work / "trafilatura.cfg"
            cfg.write_text(TRAFILATURA_CFG)
            parallel = 2 * hosts
            log(f"peer: trafilatura CLI --parallel {parallel}")
            origin.call("/__reset")
            command = [PY, "-m", "bench.cli_peer", "--input-file", str(work / "urls.txt"), "--parallel", str(parallel),
                       "--config-file", str(cfg), "--output-format", "json"]
            m = measure.run(command, cwd=work, stdout_file=work / "cli.out", stderr_file=work / "cli.log",
                            env=measured_env(work, PYTHONPATH=str(ROOT)))
            extracted = sum(1 for line in m.stdout.splitlines() if line.startswith("{"))
            results["peers"]["trafilatura_cli"] = {
                **throughput(m, count), "parallel": parallel, "extracted": extracted,
                "origin": origin.call("/__stats"), "ours_over_theirs": round(measured.wall_s / m.wall_s, 3),
            }
            log(f"peer CLI: {m.wall_s:.1f}s wall, {extracted} extracted")
        log("peer: sequential httpx + trafilatura")
        origin.call("/__reset")
        m = measure.run([PY, "-m", "bench.sequential", str(work / "urls.txt")], cwd=ROOT,
                        stdout_file=work / "seq.out", stderr_file=work / "seq.log", env=measured_env(work))
        results["peers"]["sequential"] = {
            **throughput(m, count), "counts": json.loads(m.stdout) if m.exit_code == 0 else None,
            "origin": origin.call("/__stats"), "ours_over_theirs": round(measured.wall_s / m.wall_s, 3),
        }
        log(f"peer sequential: {m.wall_s:.1f}s wall")

        # Apples to apples: neither peer reads PDFs, so time fetcher on the HTML sources alone too.
        html_urls = [url for url, s in zip(urls, sources) if s.doc.kind == "html"]
        html_sources = [s for s in sources if s.doc.kind == "html"]
        log("W1-html floor: timing extract() on each distinct document, before W1-html")
        before_html = doc_costs("mixed", count, hosts)
        log(f"W1-html: fetcher refresh of the {len(html_urls)} HTML sources only (fresh store)")
        origin.call("/__reset")
        mh, summary_h = run_fetcher(write_config(work / "w1-html", html_urls, hosts), work, "w1-html")
        log("W1-html floor: timing extract() on each distinct document again, after W1-html")
        html_floor = bracketed_floor(html_sources, before_html, doc_costs("mixed", count, hosts))
        html_floor["measured"] = measured_floor(count, hosts, html_only=True)
        results["W1_html"] = {
            **throughput(mh, len(html_urls)), "summary": summary_h, "origin": origin.call("/__stats"),
            "floor": html_floor, "time_over_floor": round(mh.wall_s / html_floor["floor_s"], 3),
            "time_over_measured_floor": round(mh.wall_s / html_floor["measured"]["wall_s"], 3),
        }
        for peer in results["peers"].values():
            if "wall_s" in peer:
                peer["ours_html_only_over_theirs"] = round(mh.wall_s / peer["wall_s"], 3)
        log(f"W1-html: {mh.wall_s:.1f}s wall, floor {html_floor['floor_s']:.1f}s")
    finally:
        origin.stop()


def w3(corpus, plan, work: Path, costs: dict, results: dict) -> None:
    count, hosts = plan["w3_sources"], plan["hosts"]
    sources = workload.mixed(corpus, count, hosts)
    origin = OriginProcess("mixed", count, hosts, 0.1)
    try:
        urls = [workload.url_of(s, origin.port, NET.scheme) for s in sources]
        config = write_config(work / "w3", urls, hosts)
        log(f"W3: fetcher refresh of {count} sources over {hosts} hosts")
        measured, summary = run_fetcher(config, work, "w3")
        w3_floor = floor(sources, costs)
        results["W3"] = {
            **throughput(measured, count), "hosts": hosts, "summary": summary, "origin": origin.call("/__stats"),
            "floor": w3_floor, "time_over_floor": round(measured.wall_s / w3_floor["floor_s"], 3),
        }
        if "W1" in results:
            results["W3"]["peak_rss_over_w1"] = round(measured.peak_rss_tree_mb / results["W1"]["peak_rss_tree_mb"], 3)
        log(f"W3: {measured.wall_s:.1f}s wall, peak RSS {measured.peak_rss_tree_mb:.0f} MB")
    finally:
        origin.stop()


def w4(corpus, plan, work: Path, results: dict) -> None:
    import trafilatura  # the peer's defaults, in this process

    sources = workload.quality(corpus, plan["w4_pages"], W4_HOSTS)
    pages = [s.doc for s in sources if s.doc.kind == "html"]
    pdfs = [s.doc for s in sources if s.doc.kind == "pdf"]
    origin = OriginProcess("quality", plan["w4_pages"] or 0, W4_HOSTS, 0.1)
    try:
        urls = [workload.url_of(s, origin.port, NET.scheme) for s in sources]
        config = write_config(work / "w4", urls, W4_HOSTS)
        log(f"W4: fetcher refresh of {len(pages)} pages and {len(pdfs)} PDFs")
        measured, summary = run_fetcher(config, work, "w4")
        export = work / "w4-export.jsonl"
        subprocess.run([PY, "-m", "fetcher", "--config", str(config), "export", "--format", "jsonl", "-o", str(export)],
                       cwd=ROOT, check=True, capture_output=True)
        by_url = {url: s.doc.key for url, s in zip(urls, sources)}
        ours = {}
        for line in export.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("url") in by_url:
                ours[by_url[record["url"]]] = (record.get("content") or {}).get("text") or ""
    finally:
        origin.stop()
    log("W4: trafilatura.extract() defaults on the same pages")
    started = time.process_time()
    theirs = {doc.key: trafilatura.extract(doc.body) or "" for doc in pages}
    theirs_cpu = time.process_time() - started
    results["W4"] = {
        "fetcher": {**score_pages(ours, pages), "pdf": score_pdfs(ours, pdfs), "summary": summary,
                    "wall_s": round(measured.wall_s, 3), "cpu_s": round(measured.cpu_s, 3)},
        "trafilatura_defaults": {**score_pages(theirs, pages), "cpu_s": round(theirs_cpu, 3)},
        "record_keys_seen": len(ours),
    }
    log(f"W4: F1 {results['W4']['fetcher']['f1']:.4f} (trafilatura defaults {results['W4']['trafilatura_defaults']['f1']:.4f})")


# -- the report ----------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def cpu_split(measured: dict) -> str:
    main = measured.get("main_cpu_s")
    if main is None:
        return f"{measured['cpu_s']:.1f} s"
    return f"{measured['cpu_s']:.1f} s ({main:.1f} + {measured['cpu_s'] - main:.1f} s)"


def timed(found: dict) -> str:
    """A floor's two timings (before and after its W1), when it has them."""
    ends = found.get("timed_s")
    return f"; {ends[0]:.1f} / {ends[1]:.1f} s" if ends else ""


def as_workers_rows(label: str, run: dict) -> list[tuple[str, str, str, str, str]]:
    """The floor with the collector set as in the extraction workers, timed right after the plain one
    (after W1), and W1 against the bracketed floor scaled by that saving."""
    found = run["floor"].get("as_workers")
    if not found:
        return []
    saving = 1 - found["floor_s"] / found["plain_floor_s"]
    return [
        (label, "floor with the extraction workers' collector settings, beside the plain one (both after W1)",
         f"{found['floor_s']:.1f} s against {found['plain_floor_s']:.1f} s ({saving:.1%} less)", "", ""),
        (label, "wall time ÷ that floor", f"{run['time_over_floor_as_workers']:.2f}×", "", ""),
    ]


def measured_floor_rows(label: str, run: dict) -> list[tuple[str, str, str, str, str]]:
    found = run["floor"].get("measured")
    if not found:
        return []
    return [
        (label, f"floor, measured: extract() alone, {found['processes']} processes at once: wall (CPU)",
         f"{found['wall_s']:.1f} s ({found['cpu_s']:.1f} s)", "", ""),
        (label, "wall time ÷ measured floor", f"{run['time_over_measured_floor']:.2f}×", "", ""),
    ]


def table(results: dict) -> list[tuple[str, str, str, str, str]]:
    rows = []
    w1, w2, w3r, w4r = (results.get(k) for k in ("W1", "W2", "W3", "W4"))
    peers = results.get("peers", {})
    if w1:
        rows += [
            ("W1 full refresh", "sources / hosts / PDFs", f"{w1['sources']} / {w1['hosts']} / {w1['pdfs']}", "", ""),
            ("W1", "wall time", f"{w1['wall_s']:.1f} s", "", ""),
            ("W1", "CPU time: all (main process + extraction workers)", cpu_split(w1), "", ""),
            ("W1", "peak RSS, process tree (largest single process)",
             f"{w1['peak_rss_tree_mb']:.0f} MB ({w1['max_rss_single_mb']:.0f} MB)", "", ""),
            ("W1", "pages/second", f"{w1['pages_per_s']:.1f}", "", ""),
            ("W1", "failed sources", str(w1["summary"]["failed"]), "0", verdict(w1["summary"]["failed"] == 0)),
            ("W1", "floor: extract() CPU / cores (HTML + PDF CPU); timed before / after W1",
             f"{w1['floor']['floor_s']:.1f} s ({w1['floor']['extract_cpu_html_s']:.1f} + "
             f"{w1['floor']['extract_cpu_pdf_s']:.1f} s CPU / {w1['floor']['cores']}){timed(w1['floor'])}", "", ""),
            ("W1", "wall time ÷ floor", f"{w1['time_over_floor']:.2f}×", "≤ 1.15×", verdict(w1["time_over_floor"] <= 1.15)),
            *as_workers_rows("W1", w1),
            *measured_floor_rows("W1", w1),
            ("W1", "most requests in flight to one host", str(w1["origin"]["max_in_flight_per_host"]), "≤ 2",
             verdict(w1["origin"]["max_in_flight_per_host"] <= 2)),
        ]
        cli = peers.get("trafilatura_cli")
        if cli and "skipped" not in cli:
            speedup = cli["wall_s"] / w1["wall_s"]
            rows += [
                ("W1 peer", f"trafilatura CLI --parallel {cli['parallel']}: wall / CPU / peak RSS",
                 f"{cli['wall_s']:.1f} s / {cli['cpu_s']:.1f} s / {cli['peak_rss_tree_mb']:.0f} MB "
                 f"({cli['extracted']} of {cli['sources']} extracted)", "", ""),
                ("W1 peer", "ours ÷ trafilatura CLI (wall)", f"{cli['ours_over_theirs']:.2f}× "
                 f"(speed-up {speedup:.2f}×)", "≤ 0.33× (≥ 3× faster)", verdict(speedup >= 3)),
            ]
        elif cli:
            rows.append(("W1 peer", "trafilatura CLI", cli["skipped"], "", "n/a"))
        seq = peers.get("sequential")
        if seq:
            counts = seq.get("counts") or {}
            rows += [
                ("W1 peer", "sequential httpx + trafilatura: wall / CPU / peak RSS",
                 f"{seq['wall_s']:.1f} s / {seq['cpu_s']:.1f} s / {seq['peak_rss_tree_mb']:.0f} MB "
                 f"({counts.get('extracted', '?')} extracted, {counts.get('skipped_not_html', '?')} PDFs skipped)",
                 "", ""),
                ("W1 peer", "ours ÷ sequential (wall)", f"{seq['ours_over_theirs']:.2f}×", "", ""),
            ]
        wh = results.get("W1_html")
        if wh:
            rows += [
                ("W1 HTML only", "fetcher on the HTML sources alone: wall / pages/s",
                 f"{wh['wall_s']:.1f} s / {wh['pages_per_s']:.1f} ({wh['sources']} pages)", "", ""),
                ("W1 HTML only", "CPU time: all (main process + extraction workers)", cpu_split(wh), "", ""),
                ("W1 HTML only", "wall ÷ floor (HTML floor; timed before / after it)",
                 f"{wh['time_over_floor']:.2f}× ({wh['floor']['floor_s']:.1f} s{timed(wh['floor'])})", "≤ 1.3×",
                 verdict(wh["time_over_floor"] <= 1.3)),
                *measured_floor_rows("W1 HTML only", wh),
            ]
            if cli and "ours_html_only_over_theirs" in cli:
                rows.append(("W1 HTML only", "ours (HTML only) ÷ trafilatura CLI (wall)",
                             f"{cli['ours_html_only_over_theirs']:.2f}× (speed-up "
                             f"{1 / cli['ours_html_only_over_theirs']:.2f}×)", "≤ 0.33× (≥ 3× faster)",
                             verdict(cli["ours_html_only_over_theirs"] <= 1 / 3)))
            if seq and "ours_html_only_over_theirs" in seq:
                rows.append(("W1 HTML only", "ours (HTML only) ÷ sequential (wall)",
                             f"{seq['ours_html_only_over_theirs']:.2f}×", "", ""))
    if w2:
        s = w2["summary"]
        rows += [
            ("W2 incremental", "wall time / CPU time" + nights_note(w2),
             f"{w2['wall_s']:.2f} s / {w2['cpu_s']:.1f} s" + nights_range(w2), "", ""),
            ("W2", "CPU of the main process per source", f"{w2['main_cpu_s'] / w2['sources'] * 1000:.2f} ms", "", ""),
            ("W2", "origin answers (304 / 200)",
             f"{w2['origin']['statuses'].get('304', 0)} / {w2['origin']['statuses'].get('200', 0)}", "", ""),
            ("W2", "changed / unchanged / failed", f"{s['changed']} / {s['unchanged']} / {s['failed']}", "", ""),
            ("W2", "wall time ÷ W1's", f"{w2['wall_over_w1']:.1%}", "≤ 5%", verdict(w2["wall_over_w1"] <= 0.05)),
            *timeline_rows("W2", w2),
            ("W2", "CPU time ÷ W1's", f"{w2['cpu_over_w1']:.1%}", "", ""),
            ("W2", "peak RSS, process tree", f"{w2['peak_rss_tree_mb']:.0f} MB", "", ""),
        ]
    rows += reuse_rows(results)
    rows += small_rows(results)
    if w3r:
        ratio = w3r.get("peak_rss_over_w1")
        rows += [
            ("W3 scale", "sources / wall / CPU", f"{w3r['sources']} / {w3r['wall_s']:.1f} s / {w3r['cpu_s']:.1f} s", "", ""),
            ("W3", "pages/second; wall ÷ floor", f"{w3r['pages_per_s']:.1f}; {w3r['time_over_floor']:.2f}×", "", ""),
            ("W3", "failed sources", str(w3r["summary"]["failed"]), "0", verdict(w3r["summary"]["failed"] == 0)),
            ("W3", "peak RSS, process tree (largest single process)",
             f"{w3r['peak_rss_tree_mb']:.0f} MB ({w3r['max_rss_single_mb']:.0f} MB)", "< 500 MB",
             verdict(w3r["peak_rss_tree_mb"] < 500)),
            ("W3", "peak RSS ÷ W1's", f"{ratio:.2f}×" if ratio else "n/a", "≤ 1.2×",
             verdict(ratio <= 1.2 if ratio else None)),
        ]
    if w4r:
        ours, theirs = w4r["fetcher"], w4r["trafilatura_defaults"]
        rows += [
            ("W4 quality", "pages scored", str(ours["documents"]), "", ""),
            ("W4", "fetcher over HTTP: precision / recall / F1",
             f"{ours['precision']:.4f} / {ours['recall']:.4f} / {ours['f1']:.4f}", "F1 ≥ 0.955",
             verdict(ours["f1"] >= 0.955)),
            ("W4", "trafilatura.extract() defaults: precision / recall / F1",
             f"{theirs['precision']:.4f} / {theirs['recall']:.4f} / {theirs['f1']:.4f}", "", ""),
            ("W4", "pages with F1 < 0.8 / empty (fetcher)", f"{ours['f1_below_0_8']} / {ours['empty']}", "", ""),
            ("W4", "PDF known sentences found", f"{ours['pdf']['found']} of {ours['pdf']['sentences']}", "all",
             verdict(ours["pdf"]["found"] == ours["pdf"]["sentences"])),
        ]
    return rows


def reuse(origin: dict) -> str:
    """The origin's counts of connection and TLS session reuse, in one cell."""
    if "connections" not in origin:
        return "n/a"
    text = (f"{origin['requests']} requests on {origin['connections']} connections "
            f"(at most {origin['max_connections_per_host']} to one host)")
    if origin["tls_full_handshakes"] or origin["tls_resumed_handshakes"]:
        text += f"; TLS handshakes {origin['tls_full_handshakes']} full, {origin['tls_resumed_handshakes']} resumed"
    return text


def reuse_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """Keep-alive and TLS-session reuse as the origin counted them, for W1 and W2 at both sizes."""
    rows = []
    for key in ("W1", "W2", "W1_small", "W2_small"):
        run = results.get(key)
        if not run:
            continue
        label, origin = key.replace("_small", f"-{run['sources']}"), run["origin"]
        target, met = "", ""
        if key.startswith("W2") and "max_connections_per_host" in origin:
            target, met = "≤ 2 a host", verdict(origin["max_connections_per_host"] <= 2)
        rows.append((label, "connections and TLS handshakes (server-side)", reuse(origin), target, met))
    return rows


def nights_note(w2: dict) -> str:
    nights = w2.get("nights_wall_s", [])
    return f" (its median night of {len(nights)})" if len(nights) > 1 else ""


def nights_range(w2: dict) -> str:
    nights = w2.get("nights_wall_s", [])
    return f" (nights {min(nights):.2f}–{max(nights):.2f} s)" if len(nights) > 1 else ""


def small_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    w1, w2 = results.get("W1_small"), results.get("W2_small")
    if not w1:
        return []
    label = f"W1-{w1['sources']}"
    rows = [
        (label, "sources / hosts / PDFs / ms a response; wall / CPU (main + workers)",
         f"{w1['sources']} / {w1['hosts']} / {w1['pdfs']} / {w1.get('latency_s', 0.1) * 1000:.0f};"
         f" {w1['wall_s']:.1f} s / {cpu_split(w1)}", "", ""),
        (label, "wall time ÷ floor (timed before / after it)",
         f"{w1['time_over_floor']:.2f}× ({w1['floor']['floor_s']:.1f} s{timed(w1['floor'])})", "≤ 1.3×",
         verdict(w1["time_over_floor"] <= 1.3)),
        *as_workers_rows(label, w1),
    ]
    if w2:
        label2 = f"W2-{w2['sources']}"
        s = w2["summary"]
        rows += [
            (label2, "wall / CPU (main process per source); 304 / 200; changed / unchanged / failed" + nights_note(w2),
             f"{w2['wall_s']:.2f} s{nights_range(w2)} / {cpu_split(w2)} ({w2['main_cpu_s'] / w2['sources'] * 1000:.2f} ms); "
             f"{w2['origin']['statuses'].get('304', 0)} / {w2['origin']['statuses'].get('200', 0)}; "
             f"{s['changed']} / {s['unchanged']} / {s['failed']}", "", ""),
            (label2, f"wall time ÷ W1-{w1['sources']}'s", f"{w2['wall_over_w1']:.1%}", "≤ 10%",
             verdict(w2["wall_over_w1"] <= 0.10)),
            *timeline_rows(label2, w2),
        ]
    return rows


def timeline_rows(label: str, w2: dict) -> list[tuple[str, str, str, str, str]]:
    """The night's wall time in three parts, and the latency floor of the middle one (bench.run.timeline)."""
    t = w2.get("timeline")
    if not t:
        return []
    return [
        (label, "its wall time, by the origin's clock: start to first request / fetching / last answer to exit",
         f"{t['start_s']:.2f} / {t['fetching_s']:.2f} / {t['exit_s']:.2f} s", "", ""),
        (label, "fetching's latency floor: rounds the busiest host needs (its requests, robots.txt first and alone, "
                "then 2 at a time) × latency; the same ÷ W1's wall",
         f"{t['rounds']} ({t['busiest_host_requests']} requests) × {t['latency_s'] * 1000:.0f} ms = "
         f"{t['latency_floor_s']:.2f} s; {t['latency_floor_over_w1']:.1%}", "", ""),
    ]


def write_report(results: dict, markdown: Path, data: Path) -> None:
    markdown.parent.mkdir(parents=True, exist_ok=True)  # --output into a directory not made yet
    data.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    meta = results["meta"]
    lines = [
        f"# fetcher benchmark ({meta['mode']})",
        "",
        f"Run {meta['started']} on {meta['cores']} cores, Python {meta['python']}, trafilatura "
        f"{meta['trafilatura']}, httpx {meta['httpx']}. Corpus: {meta['corpus']}. "
        f"Command: `{meta['command']}`; {meta['seconds']:.0f} s in all. Every server is on loopback "
        f"(127.0.0.x), {meta.get('scheme', 'http').upper()}, 100 ms per response; the archive is off.",
        "",
        "fetcher settings: " + ", ".join(f"`{k} = {v}`" for k, v in meta["fetcher_settings"].items()) + ".",
        "",
        *(["**Smoke run**: it checks that the harness works end to end; at this size the figures "
           "are start-up costs, and the targets mean nothing.", ""] if meta["mode"] == "smoke" else []),
        "| workload | figure | measured | target | met? |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in table(results)]
    lines += ["", "Raw figures: `" + data.name + "` beside this file. What each number means: `bench/README.md`.", ""]
    markdown.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="200 sources / 8 hosts, W3 at 2,000, W4 on 30 pages (a few minutes)")
    size.add_argument("--smoke", action="store_true",
                      help="20 sources / 4 hosts, W3 at 40, W4 on 4 pages: checks the harness, measures nothing")
    parser.add_argument("--only", default="w1,w2,peers,w3,w4",
                        help="comma-separated subset of w1,w2,peers,w3,w4 (w2 and peers need w1)")
    parser.add_argument("--http", action="store_true",
                        help="plain HTTP instead of HTTPS (the default: a CA made for the run, trusted through "
                             "SSL_CERT_FILE)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file (default bench/RESULTS.md, "
                        "bench/RESULTS-quick.md with --quick, bench/RESULTS-smoke.md with --smoke); "
                        "the JSON goes beside it")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    plan = {"quick": QUICK, "smoke": SMOKE, "full": FULL}[mode]
    wanted = set(args.only.split(","))
    suffix = "" if mode == "full" else f"-{mode}"
    markdown = args.output or BENCH / f"RESULTS{suffix}.md"
    data = markdown.with_suffix(".json") if args.output else BENCH / f"results{suffix}.json"
    started = time.time()
    corpus = workload.load_corpus()
    log(f"corpus: {corpus.where}: {len(corpus.pages)} pages, {len(corpus.pdfs)} PDFs")
    results: dict = {"meta": {
        "mode": mode,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench" + ("" if mode == "full" else f" --{mode}") +
                   (f" --only {args.only}" if args.only != parser.get_default("only") else "") +
                   (" --http" if args.http else ""),
        "cores": CORES, "python": platform.python_version(), "machine": platform.machine(),
        "trafilatura": package_version("trafilatura"), "httpx": package_version("httpx"),
        "pypdf": package_version("pypdf"), "corpus": corpus.where, "plan": plan,
        "fetcher_settings": {**fetcher_settings(plan["hosts"]), "archive.enabled": False},
        "latency_s": 0.1,
    }}
    work = Path(tempfile.mkdtemp(prefix="fetcher-bench-"))
    measure.warm_bytecode(ROOT)  # as installed: the first measured run (W1) compiles nothing
    log(f"work directory {work}")
    global NET
    NET = Net(None if args.http else tls.make(work / "tls", workload.host_ips(max(plan["hosts"], W4_HOSTS, 10))))
    results["meta"]["scheme"] = NET.scheme
    try:
        costs = {}
        if wanted & {"w1", "w3"}:
            log("floor: timing extract() on each distinct document (median of 3)")
            costs = doc_costs("mixed", max(plan["w1_sources"], plan["w3_sources"]), plan["hosts"])
            results["doc_costs"] = costs
        if "w1" in wanted:
            nights = W2_NIGHTS if "w2" in wanted else 0
            w1_w2_and_peers(corpus, plan, work, costs, results, peers="peers" in wanted, nights=nights)
            small_size(corpus, plan, work, results, nights)
        if "w3" in wanted:
            w3(corpus, plan, work, costs, results)
        if "w4" in wanted:
            w4(corpus, plan, work, results)
    finally:
        results["meta"]["seconds"] = time.time() - started
        results["meta"]["work_dir"] = str(work) if args.keep else "(deleted)"
        write_report(results, markdown, data)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {markdown} and {data}")
    print(markdown.read_text(encoding="utf-8"))
    return 0
