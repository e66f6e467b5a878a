"""The audit as JSON, CSV, Markdown or one self-contained HTML file.

URLs and titles come from the web and are data, never markup or code: in
Markdown every character that means something there is escaped and link targets
are percent-encoded; in HTML all text and attributes are escaped, only http(s)
URLs become links, and a Content-Security-Policy lets no script run but the
report's own (by its hash), so even a missed escape could not run code."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import re
from datetime import datetime
from urllib.parse import quote, urlsplit

from fetcher.core.states import STATES, State
from fetcher.core.timestamps import rfc3339
from fetcher.views.audit import Audit, AuditRow

COLUMNS = (
    "state", "resource_id", "url", "title", "outcome", "http_status", "detail", "last_checked", "first_failure",
    "last_failure", "last_good", "moved_to", "stand_in_url", "stand_in_captured_at", "stand_in_archive",
)
COLOURS = {
    State.OK: "#2e7d32", State.REDIRECTED: "#0277bd", State.UNCHECKED: "#9e9e9e", State.BLOCKED: "#f9a825",
    State.FAILING: "#ef6c00", State.SOFT_404: "#8e24aa", State.DEAD: "#c62828",
}


def to_json(audit: Audit, generated: datetime) -> str:
    return json.dumps(
        {
            "generated_at": rfc3339(generated),
            "counts": {state.value: n for state, n in audit.counts().items()},
            "sources": [row.to_dict() for row in audit.rows],
            "newly_broken": [row.resource_id for row in audit.newly_broken],
            "recovered": [row.resource_id for row in audit.recovered],
        },
        ensure_ascii=False,
        indent=2,
    )


def to_csv(audit: Audit) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in audit.rows:
        writer.writerow({key: "" if value is None else value for key, value in row.to_dict().items()})
    return out.getvalue()


def to_markdown(audit: Audit, generated: datetime) -> str:
    counts = " · ".join(f"{name} {n}" for name, n in audit.counts().items())
    lines = [f"## Source audit, {generated:%Y-%m-%d %H:%M} UTC", "", counts or "no sources", ""]
    for heading, rows in (("Newly broken since the last run", audit.newly_broken),
                          ("Recovered since the last run", audit.recovered)):
        if rows:
            lines += [f"### {heading}", ""] + [f"- {_md_link(row)} ({row.outcome})" for row in rows] + [""]
    broken = [row for row in audit.rows if row.state not in (State.OK, State.UNCHECKED)]
    if broken:
        lines += ["| state | source | outcome | failing since | archived copy |", "| --- | --- | --- | --- | --- |"]
        for row in broken:
            stand_in = _md_url_link(_day(row.stand_in_captured_at), row.stand_in_url) if row.stand_in_url else "—"
            if row.moved_to:
                stand_in = f"moved to <{_md_target(row.moved_to)}>" if _is_web(row.moved_to) else "moved"
            lines.append(f"| {row.state} | {_md_link(row)} | {row.outcome_label} | {_day(row.first_failure)} | {stand_in} |")
    return "\n".join(lines) + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>!|~&])")  # inline syntax; text never starts a line
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_URL_SAFE = "/:?#@!$&'*+,;=%~"  # kept as they are in a link target; the rest is percent-encoded


def _md_link(row: AuditRow) -> str:
    return _md_url_link(row.title or row.url, row.url)


def _md_url_link(text: str, url: str | None) -> str:
    """`[text](url)` with the text escaped and the URL percent-encoded; only the
    text when the URL is not http(s)."""
    label = _md_text(text)
    return f"[{label}]({_md_target(url)})" if url is not None and _is_web(url) else label


def _md_text(text: str) -> str:
    """Text shown literally by Markdown: on one line, every special character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


def _md_target(url: str) -> str:
    """A link target Markdown cannot end early: no spaces, brackets, pipes, quotes or backticks."""
    return quote(_LINE_BREAKS.sub("", url), safe=_URL_SAFE)


def _is_web(url: str | None) -> bool:
    if not url:
        return False
    try:
        return urlsplit(url.strip()).scheme.lower() in ("http", "https")
    except ValueError:
        return False


def _day(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment else "—"


def to_html(audit: Audit, generated: datetime) -> str:
    counts = audit.counts()
    cards = "".join(
        f'<div class="card" style="border-color:{COLOURS[name]}"><b>{n}</b> {name}</div>' for name, n in counts.items()
    )
    rows = "".join(_html_row(row) for row in audit.rows)
    changes = "".join(
        f"<h2>{title}</h2><ul>" + "".join(f"<li>{_source(r)} ({_e(r.outcome)})</li>"
                                          for r in rows_) + "</ul>"
        for title, rows_ in (("Newly broken since the last run", audit.newly_broken),
                             ("Recovered since the last run", audit.recovered)) if rows_
    )
    options = "".join(f'<option value="{name}">{name}</option>' for name in STATES)
    return _PAGE.format(
        generated=f"{generated:%Y-%m-%d %H:%M} UTC", cards=cards, chart=_chart(audit.history), changes=changes,
        rows=rows, options=options, total=len(audit.rows), script=_SCRIPT, script_hash=_SCRIPT_HASH,
    )


def _html_row(row: AuditRow) -> str:
    archived = _a(row.stand_in_url, _day(row.stand_in_captured_at)) if row.stand_in_url else ""
    if row.moved_to:
        archived = f"moved to {_a(row.moved_to, row.moved_to)}"
    cells = (
        f'<td><span class="state" style="background:{COLOURS[row.state]}">{row.state}</span></td>',
        f'<td>{_source(row)}<div class="id">{_e(row.resource_id)}</div></td>',
        f"<td>{_e(row.outcome_label)}</td>",
        f"<td>{_day(row.first_failure)}</td>",
        f"<td>{_day(row.last_good)}</td>",
        f"<td>{archived}</td>",
    )
    rank = STATES.index(row.state)
    search = _e(" ".join(filter(None, (row.url, row.title, row.outcome, row.state, row.resource_id))).lower())
    return f'<tr data-state="{row.state}" data-rank="{rank}" data-search="{search}">{"".join(cells)}</tr>'


def _source(row: AuditRow) -> str:
    """The source's title linked to its URL, with the URL itself (as text) under
    it; or the linked URL alone."""
    if not row.title:
        return _a(row.url, row.url)
    return f'{_a(row.url, row.title)}<div class="url">{_e(row.url)}</div>'


def _chart(history: list[tuple[datetime, dict[str, int]]]) -> str:
    """Stacked bars of the sources' states after each recorded run, as inline SVG."""
    if not history:
        return "<p>No recorded runs yet: the chart appears after the first refresh.</p>"
    width, height, gap = 640, 180, 2
    bar = min(40, max(4, (width - gap * len(history)) // max(1, len(history))))
    top = max(sum(counts.values()) for _, counts in history) or 1
    parts = []
    for index, (when, counts) in enumerate(history):
        x, y = index * (bar + gap), float(height)
        for name in reversed(STATES):
            size = counts.get(name, 0) * height / top
            if size:
                y -= size
                parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{size:.1f}" fill="{COLOURS[name]}">'
                             f"<title>{when:%Y-%m-%d %H:%M}: {name} {counts[name]}</title></rect>")
    legend = " ".join(f'<span style="color:{COLOURS[n]}">■</span> {n}' for n in STATES)
    return (f'<svg id="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="source health per run">{"".join(parts)}</svg><div class="legend">{legend}</div>')


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def _a(url: str | None, text: str) -> str:
    """A link to an http(s) URL, text and address escaped; any other scheme
    (javascript:, data:) is shown as text, not linked."""
    return f'<a href="{_e(url)}">{_e(text)}</a>' if _is_web(url) else _e(text)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src '{script_hash}'; img-src data:; base-uri 'none'; form-action 'none'">
<title>Source audit</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
.cards {{ display: flex; gap: .6em; flex-wrap: wrap; }} .card {{ border-left: 6px solid; padding: .4em .8em; background: #f5f5f5; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }} th, td {{ text-align: left; padding: .3em .5em; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ cursor: pointer; user-select: none; background: #fafafa; }} th.sorted::after {{ content: " ▾"; }} th.sorted.up::after {{ content: " ▴"; }}
.url {{ font-size: 12px; color: #555; overflow-wrap: anywhere; }}
.state {{ color: #fff; border-radius: 3px; padding: 0 .4em; font-size: 12px; }} .id {{ color: #888; font: 11px monospace; }}
.legend {{ font-size: 12px; margin: .3em 0 1em; }} #shown {{ color: #666; }}
</style></head>
<body>
<h1>Source audit</h1><p>Generated {generated}. {total} sources.</p>
<div class="cards">{cards}</div>
<h2>Health over the recorded runs</h2>{chart}
{changes}
<h2>Sources</h2>
<label>State <select id="state"><option value="">all</option>{options}</select></label>
<label>Search <input id="search" type="search" placeholder="url, title, outcome"></label>
<span id="shown"></span>
<table id="sources"><thead><tr>
<th data-key="rank">state</th><th data-key="text">source</th><th data-key="text">outcome</th>
<th data-key="text">failing since</th><th data-key="text">last good</th><th data-key="text">archived copy</th>
</tr></thead><tbody>{rows}</tbody></table>
<script>{script}</script>
</body></html>
"""

_SCRIPT = """
(function () {
  var table = document.getElementById("sources"), body = table.tBodies[0];
  var stateBox = document.getElementById("state"), search = document.getElementById("search");
  function cellValue(row, index, key) {
    return key === "rank" ? Number(row.dataset.rank) : row.cells[index].textContent.trim().toLowerCase();
  }
  function sortBy(index, ascending) {
    var header = table.tHead.rows[0].cells[index], key = header.dataset.key;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, key), y = cellValue(b, index, key);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.className = ""; });
    header.className = "sorted" + (ascending ? "" : " up");
  }
  function filter() {
    var wanted = stateBox.value, words = search.value.trim().toLowerCase(), shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var visible = (!wanted || row.dataset.state === wanted) && (!words || row.dataset.search.indexOf(words) >= 0);
      row.style.display = visible ? "" : "none";
      shown += visible ? 1 : 0;
    });
    document.getElementById("shown").textContent = shown + " shown";
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
    th.addEventListener("click", function () { sortBy(index, th.className !== "sorted"); });
  });
  stateBox.addEventListener("change", filter);
  search.addEventListener("input", filter);
  var hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("state")) stateBox.value = hash.get("state");
  if (hash.has("q")) search.value = hash.get("q");
  if (hash.has("sort")) sortBy(Number(hash.get("sort")), hash.get("dir") !== "desc");
  filter();
})();
"""
_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
