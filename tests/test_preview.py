"""The preview block in the knowledge base's format."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from fetcher.core.models import Snapshot
from fetcher.views.preview import excerpt, human_date, human_size, make_preview, render_markdown, render_text
from fetcher.core.sources import resource_id

WHEN = datetime(2026, 4, 9, 14, 0, tzinfo=timezone.utc)


def snapshot(fetch_id=1, status=200, outcome="ok", text="word " * 3000, when=WHEN) -> Snapshot:
    has = text is not None
    return Snapshot(
        fetch_id=fetch_id, resource_id="a6ec2c2fe408fea3", url="https://x.org/r", final_url="https://x.org/r",
        fetched_at=when, origin="live", http_status=status, outcome=outcome, detail="" if has else "Not Found",
        attempts=1, elapsed_ms=5, changed=has, sha256="ab" * 32 if has else None,
        text=text, text_chars=len(text) if has else None,
    )


def test_resource_id_matches_the_knowledge_base():
    url = "https://www.ntia.gov/sites/default/files/publications/ntia-ai-open-model-report.pdf"
    assert resource_id(url) == "a6ec2c2fe408fea3"


def test_sizes_and_dates_read_like_the_old_previews():
    assert human_size(14 * 1024 + 100) == "14 KB"
    assert human_size(300) == "<1 KB"
    assert human_size(0) == "0 KB"
    assert human_date(WHEN) == "Apr 9, 2026"


def test_long_text_is_cut_at_a_word_and_says_so():
    lines = render_text(make_preview(snapshot(), snapshot(), 3000)).split("\n")
    assert lines[0] == "Cached Content Preview"
    assert lines[1] == "HTTP 200 · Fetched Apr 9, 2026 · 15 KB"
    assert len(lines[2]) <= 3000 and lines[2].endswith("word")
    assert lines[3] == "... (truncated, 15 KB total)"
    assert lines[4] == "Resource ID: a6ec2c2fe408fea3"


def test_short_text_has_no_truncation_line():
    text = render_text(make_preview(snapshot(text="Short."), snapshot(text="Short."), 3000))
    assert text.split("\n") == [
        "Cached Content Preview", "HTTP 200 · Fetched Apr 9, 2026 · <1 KB", "Short.", "Resource ID: a6ec2c2fe408fea3"
    ]


def test_failure_after_content_shows_the_old_copy_with_the_new_status():
    later = datetime(2026, 11, 23, tzinfo=timezone.utc)
    failed = snapshot(fetch_id=2, status=404, outcome="http-404", text=None, when=later)
    preview = make_preview(failed, snapshot(), 100)
    assert preview.status_line == "HTTP 404 (http-404) · Fetched Nov 23, 2026 · showing the copy fetched Apr 9, 2026 · 15 KB"
    assert preview.excerpt.startswith("word word")


def test_no_response_and_no_content():
    failed = snapshot(status=None, outcome="dns-error", text=None)
    assert make_preview(failed, None, 100).status_line == "No response (dns-error) · Fetched Apr 9, 2026 · no content"


def test_excerpt_never_exceeds_the_limit():
    for limit in (1, 10, 99, 3000):
        cut, was_cut = excerpt("x" * 50 + " " + "y" * 5000, limit)
        assert len(cut) <= limit and was_cut


def test_markdown_quotes_the_text():
    md = render_markdown(make_preview(snapshot(text="Line one.\n\nLine two."), snapshot(text="Line one.\n\nLine two."), 3000))
    assert "> Line one.\n>\n> Line two." in md
    assert re.search(r"^Resource ID: `a6ec2c2fe408fea3`$", md, re.M)
