"""Extraction on real pages and PDFs, served over HTTP: the article, not the menus."""

from __future__ import annotations

import re

import pytest
from lxml import html as lxml_html

from fetcher.extract.decode import decode_text
from fetcher.extract.document import sniff_kind
from fetcher.views.preview import make_preview, render_text
from tests.conftest import corpus_pages, corpus_pdfs, normalised
from tests.origin import respond

PAGES = corpus_pages()


def first_sentences(gold: str, count: int = 2) -> list[str]:
    paragraph = next(p for p in gold.split("\n") if len(p) > 80)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", paragraph) if len(s.strip()) > 40]
    return sentences[:count]


def menu_texts(page_html: bytes, gold: str) -> list[str]:
    """Link texts of the page that are not part of the article: navigation, footers."""
    texts = {" ".join(a.text_content().split()) for a in lxml_html.fromstring(page_html).iter("a")}
    return sorted(t for t in texts if len(t) >= 15 and t not in gold)


def token_f1(found: str, gold: str) -> float:
    from collections import Counter

    ours, theirs = Counter(found.split()), Counter(gold.split())
    common = sum((ours & theirs).values())
    if not common:
        return 0.0
    precision, recall = common / sum(ours.values()), common / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("page", PAGES, ids=[p.key[:8] for p in PAGES])
def test_corpus_page_preview_has_the_article_not_the_menus(origin, run, page):
    url = origin.route(f"/{page.key}", respond(200, page.html))
    r = run()
    snap = r.fetch(url)
    assert snap.outcome == "ok"
    preview = render_text(make_preview(snap, snap, r.config.preview_chars))
    for sentence in first_sentences(page.gold):
        assert sentence in preview
    menus = menu_texts(page.html, page.gold)
    assert len(menus) >= 10  # the page does have navigation to leave out
    assert [m for m in menus if m in snap.text] == []
    assert token_f1(snap.text, page.gold) > 0.85


def test_navigation_before_the_article_is_left_out(origin, run):
    """The old system's bug (seed 000): the preview was the site's menu."""
    menu = "".join(
        f'<li><a href="/t{i}">{name}</a><p>{blurb}</p></li>'
        for i, (name, blurb) in enumerate(
            [
                ("AI Risk & Accountability", "AI has risks and all actors must be accountable."),
                ("AI, Data & Privacy", "Data and privacy are primary policy issues for AI."),
                ("Generative AI", "Managing the risks and benefits of generative AI."),
                ("Future of Work", "How AI can and will affect workers and working environments"),
            ]
        )
    )
    article = "".join(
        f"<p>Open-weight models offer benefits for research and competition, paragraph {i}, "
        "while their release cannot be undone once the weights are public.</p>"
        for i in range(12)
    )
    body = (
        "<html lang='en'><head><title>AI openness - OECD.AI</title></head><body>"
        f"<header><nav><ul>{menu}</ul></nav></header>"
        f"<main><article><h1>AI openness: balancing innovation and risk</h1>{article}</article></main>"
        "<footer><a href='/privacy'>Privacy policy and terms of use</a></footer></body></html>"
    )
    url = origin.route("/wonk/ai-openness", respond(200, body.encode()))
    snap = run().fetch(url)
    assert snap.text.startswith("AI openness: balancing innovation and risk") or snap.text.startswith("Open-weight")
    assert "Future of Work" not in snap.text and "primary policy issues" not in snap.text
    assert snap.language == "en"


def test_title_date_and_language_are_recorded(origin, run):
    paragraphs = "".join(
        f"<p>The agency reviewed {i} comments on dual-use foundation models with widely available "
        "weights and set out what it would monitor next year.</p>"
        for i in range(10)
    )
    body = (
        "<html lang='en-GB'><head><title>Report  |\n  Agency site</title>"
        "<meta property='og:title' content='Dual-Use Foundation Models:   Open Weights'>"
        "<meta property='article:published_time' content='2024-07-30T09:00:00Z'></head>"
        f"<body><article><h1>Another heading</h1>{paragraphs}</article></body></html>"
    )
    dated = origin.route("/report", respond(200, body.encode()))
    plain = origin.route(
        "/plain", respond(200, f"<html><head><title>Only  a\ttitle tag</title></head><body>{paragraphs}</body></html>".encode())
    )
    r = run()
    snap = r.fetch(dated)
    assert (snap.title, snap.published, snap.language) == ("Dual-Use Foundation Models: Open Weights", "2024-07-30", "en-GB")
    assert "reviewed 3 comments" in snap.text
    snap = r.fetch(plain)
    assert (snap.title, snap.published, snap.language) == ("Only a title tag", None, None)


def _hidden_page(article: str, hidden_style: str, hidden: str) -> bytes:
    return (
        "<html><head><title>Harbour bridge</title></head><body>"
        f"<div class='content'><h1>Harbour bridge repairs agreed</h1>{article}</div>"
        f"<div style='{hidden_style}' itemscope itemtype='http://schema.org/NewsArticle'>{hidden}</div>"
        "</body></html>"
    ).encode()


def test_text_the_page_hides_is_left_out_but_still_dates_it(origin, run):
    """A schema.org block styled display:none repeats the article, its keywords and
    dates: a reader never sees it, so the preview does not show it (the corpus's
    businessinsider page: token F1 0.46 before)."""
    article = "".join(f"<p>The committee heard {i} witnesses on the harbour bridge repairs and agreed a "
                      "schedule of works for the spring.</p>" for i in range(8))
    hidden = ("<div itemprop='keywords'>bridges,harbour,zebrakeyword</div>"
              "<div itemprop='datePublished'>2019-11-19T08:57:40+01:00</div><div itemprop='articleBody'>"
              + "".join(f"<p>Hidden copy sentence {i} of the works schedule agreed by the committee.</p>"
                        for i in range(8)) + "</div>")
    r = run()
    for style in ("display:none;", "DISPLAY : None", "color: red;\n display:\tnone"):
        url = origin.route(f"/hidden/{len(style)}", respond(200, _hidden_page(article, style, hidden)))
        snap = r.fetch(url)
        assert "heard 7 witnesses" in snap.text
        assert "zebrakeyword" not in snap.text and "Hidden copy sentence" not in snap.text, style
        assert snap.published == "2019-11-19"
    shown = origin.route("/shown", respond(200, _hidden_page(article, "color: red", hidden)))
    assert "Hidden copy sentence 3" in r.fetch(shown).text  # not hidden: kept, so the rule is what removed it


def test_a_page_that_hides_nearly_all_its_text_until_a_script_runs_keeps_it(origin, run):
    """Hidden text that is most of the page is the page (shown by script on load):
    it is extracted, not thrown away."""
    article = "".join(f"<p>Paragraph {i} of the report on the regional water supply and the reservoirs "
                      "that feed it through the dry summer months.</p>" for i in range(10))
    body = ("<html><head><title>Water</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<main style='display:none' id='app'><article><h1>Water supply</h1>{article}</article></main>"
            "<script>document.getElementById('app').style.display='block'</script></body></html>")
    url = origin.route("/revealed", respond(200, body.encode()))
    snap = run().fetch(url)
    assert "Paragraph 9 of the report on the regional water supply" in snap.text


@pytest.mark.parametrize("name", sorted(corpus_pdfs()))
def test_pdf_known_sentences_are_extracted(origin, run, name):
    data, sentences = corpus_pdfs()[name]
    url = origin.route(f"/{name}", respond(200, data, {"Content-Type": "application/pdf"}))
    snap = run().fetch(url)
    assert snap.outcome == "ok"
    for sentence in sentences:
        assert normalised(sentence) in normalised(snap.text)


def test_type_is_sniffed_from_bytes_before_the_header():
    assert sniff_kind(b"%PDF-1.7\n...", "text/html") == "pdf"
    assert sniff_kind(b"<!DOCTYPE html><html><body>x</body></html>", "application/octet-stream") == "html"
    assert sniff_kind(b"  <html lang=en><p>x", None) == "html"
    assert sniff_kind(b"just words", "text/plain; charset=utf-8") == "text"
    assert sniff_kind(b"\x89PNG\r\n\x1a\n\x00\x00", "image/png") == "unknown"


def test_decoding_prefers_bom_then_utf8_then_labels():
    assert decode_text("\ufeffcafé".encode("utf-8"), "iso-8859-1", html=False)[0] == "café"
    assert decode_text("café".encode("utf-8"), "iso-8859-1", html=False)[0] == "café"
    latin = '<meta charset="windows-1252"><p>caf\xe9 \x93quoted\x94</p>'.encode("latin-1")
    text, encoding = decode_text(latin, None, html=True)
    assert "café “quoted”" in text and encoding == "cp1252"


def test_a_page_whose_date_cannot_be_read_keeps_its_text_and_title(origin, run, monkeypatch):
    import fetcher.extract.html

    def broken(*args, **kwargs):
        raise ValueError("a date format nobody expected")

    monkeypatch.setattr(fetcher.extract.html, "find_date", broken)  # a one-off fetch extracts in this process
    paragraphs = "".join(f"<p>Paragraph {i} of a report whose date trips the date parser, kept whole.</p>" for i in range(8))
    url = origin.route("/odd", respond(200, f"<html><head><title>Odd  date</title></head><body>{paragraphs}</body></html>".encode()))
    snap = run().fetch(url)
    assert (snap.outcome, snap.title, snap.published) == ("ok", "Odd date", None)
    assert "Paragraph 5 of a report" in snap.text
