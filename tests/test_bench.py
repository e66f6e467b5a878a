"""The benchmark harness end to end at its smallest size (`python -m bench --smoke`),
so it cannot rot between full runs. It measures nothing: it checks that every
workload ran against the loopback origin and that the report says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_runs_every_workload_and_reports_it(tmp_path):
    out = tmp_path / "smoke.md"
    env = {**os.environ, "FETCHER_CORPUS": str(tmp_path / "no-corpus")}  # the same fixtures here and in CI
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["meta"]["corpus"].startswith("FALLBACK: tests/fixtures")
    assert data["meta"]["scheme"] == "https"  # the origin served HTTPS, its CA trusted through SSL_CERT_FILE
    w1 = data["W1"]
    assert (w1["sources"], w1["pdfs"], w1["summary"]["failed"]) == (20, 2, 0)
    assert w1["origin"]["max_in_flight_per_host"] <= 2 and w1["origin"]["statuses"]["200"] == 20
    assert w1["floor"]["measured"]["documents"] == 20 and w1["floor"]["floor_s"] > 0
    assert 0 < w1["main_cpu_s"] < w1["cpu_s"]  # the split between main process and workers was taken
    for run in (w1, data["W1_small"]):  # each W1's floor: extract() timed just before it and just after, the mean
        before, after = run["floor"]["timed_s"]
        assert before > 0 and after > 0 and abs(run["floor"]["floor_s"] - (before + after) / 2) < 0.002
    seen = w1["origin"]  # connection reuse, counted by the origin
    assert seen["requests"] >= 20 and 0 < seen["connections"] <= seen["requests"]
    assert seen["tls_full_handshakes"] + seen["tls_resumed_handshakes"] == seen["connections"]
    small = data["W1_small"], data["W2_small"]
    assert [run["sources"] for run in small] == [8, 8] and [run["summary"]["failed"] for run in small] == [0, 0]
    assert small[1]["origin"]["statuses"].get("304", 0) > 0
    w2 = data["W2"]
    assert w2["origin"]["statuses"].get("304", 0) > 0 and w2["summary"]["failed"] == 0
    for night in (w2, small[1]):  # W2's median of 5 nights, each on a copy of the store W1 left
        assert len(night["nights_wall_s"]) == 5 and night["wall_s"] == sorted(night["nights_wall_s"])[2]
        assert night["nights_changed"] == [night["summary"]["changed"]] * 5 and night["summary"]["changed"] > 0
        parts = night["timeline"]  # its wall time in three parts, by the origin's clock, which add up to it
        assert min(parts["start_s"], parts["fetching_s"], parts["exit_s"]) > 0
        assert abs(parts["start_s"] + parts["fetching_s"] + parts["exit_s"] - night["wall_s"]) < 0.01
        assert parts["busiest_host_requests"] == night["origin"]["max_requests_per_host"] >= 2
        assert parts["latency_floor_s"] <= parts["fetching_s"]  # no run beats the floor
    cli = data["peers"]["trafilatura_cli"]
    assert cli["extracted"] == 18  # the CLI reads the 18 pages and none of the 2 PDFs
    assert data["peers"]["sequential"]["counts"]["extracted"] == 18
    assert data["W1_html"]["sources"] == 18 and data["W3"]["summary"]["failed"] == 0
    w4 = data["W4"]["fetcher"]
    assert w4["documents"] == 4 and w4["f1"] > 0.8 and w4["pdf"]["found"] == w4["pdf"]["sentences"] > 0
    table = out.read_text(encoding="utf-8")
    for row in ("| W1 | wall time ÷ floor |", "| W2 | wall time ÷ W1's |", "| W3 | peak RSS ÷ W1's |",
                "| W4 | PDF known sentences found |", "**Smoke run**", "| W2 | connections and TLS handshakes",
                "| W1-8 | wall time ÷ floor (timed before / after it) |", "| W2-8 | wall time ÷ W1-8's |",
                "| W2 | fetching's latency floor", "| W2-8 | its wall time, by the origin's clock"):
        assert row in table


def test_cheap_night_reports_the_all_304_night_and_the_first_nights_main_process():
    """`python -m bench.cheap_night` at its smallest: both tables, with figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cheap_night", "--sources", "4", "--hosts", "2", "--runs", "1", "--latency", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith(f"| {ROOT}")]
    assert len(rows) == 2, done.stdout
    night, first = ([float(cell) for cell in row[1:] if cell.strip() not in ("yes", "no")] for row in rows)
    assert night[0] > 0 and night[4] <= 2  # CPU per check; connections one host accepted
    assert 0 < first[0] < first[2]  # the main process's CPU per source is part of the whole run's


def test_the_measured_floor_runs_the_same_bodies_through_fetchers_extraction_pool(tmp_path):
    """`python -m bench.parallel_floor --pool` at its smallest: every body through fetcher's
    extraction pool, as the multiprocessing pool does without --pool."""
    env = {**os.environ, "FETCHER_CORPUS": str(tmp_path / "no-corpus")}  # the fixtures, as in CI
    figures = []
    for extra in ([], ["--pool"]):
        done = subprocess.run([sys.executable, "-m", "bench.parallel_floor", "--sources", "12", "--hosts", "2", *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        figures.append(json.loads(done.stdout))
    plain, pooled = figures
    assert pooled["pool"] == "fetcher" and "pool" not in plain
    assert pooled["documents"] == plain["documents"] == 12
    # the workers' CPU is in it, their start too: two processes importing trafilatura and pypdf
    assert pooled["wall_s"] > 0 and pooled["cpu_s"] > plain["cpu_s"] + 0.2
