"""Links in documents: what each kind of file yields (URLs as written, titles, where),
what counts as new against the config, and appending sources to config.toml."""

from __future__ import annotations

import os
import stat
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fetcher.core.config import ConfigError, load_config
from fetcher.cli.config_file import append_sources, toml_string
from fetcher.cli.documents import FoundLink, links_in_file, links_in_files, new_sources
from fetcher.core.sources import make_source, resource_id

WHEN = datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc)

MARKDOWN = """\
# Reading list

See the [NTIA report](https://www.ntia.gov/report.pdf "NTIA") and <https://example.org/autolink>.
A bare one: https://example.com/bare. And (see https://en.wikipedia.org/wiki/Foo_(bar)), fine.
[Wikipedia on *Foo*](https://en.wikipedia.org/wiki/Foo_(disambiguation)) with parens.
Inline code `https://example.com/in-code` is skipped, and so is ``a `tick` https://example.com/in-double-code``.

```bash
curl https://example.com/in-fence
```

  ~~~~
  [fenced](https://example.com/in-tilde-fence)
  ~~~
  still fenced: https://example.com/still-in-fence
  ~~~~

Trailing punctuation: https://example.com/a?x=1&y=2; https://example.com/b! **https://example.com/c**?
A [reference link][ntia-ref] and a [shortcut] one, repeated [again][ntia-ref], cited [1].
![Chart of things](https://example.com/chart.png) and ![local](images/local.png)
[![CI](https://img.shields.io/badge.svg)](https://github.com/o/r/actions)
http:// is not a URL, nor is https:///nohost or [empty]().
<!-- https://example.com/in-comment -->
[escaped \\[x\\]](<https://example.com/angle?a=1&amp;b=2> "ignored") and [relative](docs/x.md).

[ntia-ref]: https://example.net/ref "Ref title"
[shortcut]: <https://example.net/shortcut>
[1]: https://example.net/numbered 'Numbered'
[^1]: A footnote citing https://example.net/footnote.
"""

MARKDOWN_LINKS = [
    ("https://www.ntia.gov/report.pdf", "NTIA report", 3),
    ("https://example.org/autolink", None, 3),
    ("https://example.com/bare", None, 4),
    ("https://en.wikipedia.org/wiki/Foo_(bar)", None, 4),
    ("https://en.wikipedia.org/wiki/Foo_(disambiguation)", "Wikipedia on Foo", 5),
    ("https://example.com/a?x=1&y=2", None, 18),
    ("https://example.com/b", None, 18),
    ("https://example.com/c", None, 18),
    ("https://example.com/chart.png", "Chart of things", 20),
    ("https://img.shields.io/badge.svg", "CI", 21),
    ("https://github.com/o/r/actions", "CI", 21),
    ("https://example.com/angle?a=1&b=2", "escaped [x]", 24),
    ("https://example.net/ref", "reference link", 26),
    ("https://example.net/shortcut", "shortcut", 27),
    ("https://example.net/numbered", "Numbered", 28),
    ("https://example.net/footnote", None, 29),
]

MDX = """\
import Chart from "https://esm.sh/chart"
export const meta = {
  source: "https://example.com/in-export",
}

# Post

<a href="https://example.com/jsx-a?x=1&amp;y=2">JSX <b>anchor</b></a> and <Link href={"https://example.com/braces"}>Next link</Link>
<img src="https://example.com/img-src.png" alt="x" />
<Card
  href='https://example.com/multiline-card'
  title="Card" />
{/* https://example.com/in-jsx-comment */}
Text with [a link](https://example.com/md-in-mdx) and `<a href="https://example.com/code">`.
"""

HTML_PAGE = """\
<!DOCTYPE html>
<html><head><base href="https://example.com/docs/"><title>T</title></head>
<body>
<p><a href="https://example.org/abs">Absolute
   link</a></p>
<a href="guide/intro.html">Intro</a> <a href="/root" title="Root page"></a>
<a href="#top">Top</a> <a href="mailto:x@example.com">Mail</a> <a href="javascript:void(0)">JS</a>
<a href=" https://example.org/amp?a=1&amp;b=2 "><img alt="logo" src="x.png"></a>
<a>no href</a> <a href="http://">no host</a> <img src="https://example.org/image.png">
</body></html>
"""

PLAIN_LIST = """\
# my reading list
https://example.com/one

   # indented comment https://example.com/commented
https://en.wikipedia.org/wiki/Foo_(bar)
  https://example.com/exactly-as-written.
see https://example.com/two, and (https://example.com/three).
http://
https://example.com/one
"""


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def triples(links: list[FoundLink], path: Path) -> list[tuple[str, str | None, int]]:
    """(url, title, line), after checking that every `where` names the file."""
    result = []
    for link in links:
        file, _, line = link.where.rpartition(":")
        assert file == str(path), link
        result.append((link.url, link.title, int(line)))
    return result


# -- Markdown and MDX ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".md", ".markdown", ".MD"])
def test_markdown_links_as_written_in_order_with_titles_and_lines(tmp_path, suffix):
    path = write(tmp_path, f"notes{suffix}", MARKDOWN)
    assert triples(links_in_file(path), path) == MARKDOWN_LINKS


def test_markdown_images_can_be_left_out(tmp_path):
    path = write(tmp_path, "notes.md", MARKDOWN)
    urls = [link.url for link in links_in_file(path, images=False)]
    images = ["https://example.com/chart.png", "https://img.shields.io/badge.svg"]
    assert urls == [url for url, _, _ in MARKDOWN_LINKS if url not in images]
    # the image is not found again as a bare URL; the badge's link still is
    assert "https://github.com/o/r/actions" in urls


def test_markdown_with_windows_line_ends_gives_the_same_links(tmp_path):
    path = write(tmp_path, "notes.md", MARKDOWN.replace("\n", "\r\n").encode("utf-8"))
    assert triples(links_in_file(path), path) == MARKDOWN_LINKS


def test_unclosed_fence_hides_the_rest_of_the_document(tmp_path):
    path = write(tmp_path, "open.md", "https://example.com/before\n```\nhttps://example.com/after\n")
    assert [link.url for link in links_in_file(path)] == ["https://example.com/before"]


def test_link_text_does_not_run_across_paragraphs(tmp_path):
    path = write(tmp_path, "stray.md", "A stray [ bracket.\n\nThen ](https://example.com/x) and [real](https://example.com/y).\n")
    assert links_in_file(path) == [
        FoundLink("https://example.com/x", None, f"{path}:3"),
        FoundLink("https://example.com/y", "real", f"{path}:3"),
    ]


def test_lines_are_where_the_url_is_written_across_line_breaks(tmp_path):
    text = (
        "A code span `over\nhttps://example.com/in-code` lines, then https://example.com/after\n"  # 1-2
        "and [a link](\nhttps://example.com/next-line) and [a use] of a label.\n"  # 3-4
        "\n"
        "[a use]:\n"  # 6
        "  https://example.com/definition\n"  # 7
    )
    path = write(tmp_path, "lines.md", text)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/after", None, 2),
        ("https://example.com/next-line", "a link", 4),
        ("https://example.com/definition", "a use", 7),
    ]


def test_reference_titles_come_from_each_label_even_when_labels_are_code(tmp_path):
    text = "See [`open`] and [`close`].\n\n[`open`]: https://example.com/open\n[`close`]: https://example.com/close\n"
    path = write(tmp_path, "api.md", text)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/open", "open", 3),
        ("https://example.com/close", "close", 4),
    ]


def test_indented_code_is_code_in_markdown_but_not_in_mdx(tmp_path):
    text = "Run this:\n\n    curl https://example.com/indented\n"
    assert links_in_file(write(tmp_path, "run.md", text)) == []
    mdx = write(tmp_path, "run.mdx", text)
    assert links_in_file(mdx) == [FoundLink("https://example.com/indented", None, f"{mdx}:3")]


def test_raw_html_blocks_and_footnotes(tmp_path):
    text = (
        '<div align="center">\n'
        '<a href="https://example.com/home">Home</a> or https://example.com/bare.\n'
        "</div>\n"
        "\n"
        "A claim.[^1]\n"
        "\n"
        "[^1]: https://example.com/footnote.\n"
    )
    path = write(tmp_path, "readme.md", text)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/home", "Home", 2),
        ("https://example.com/bare", None, 2),
        ("https://example.com/footnote", None, 7),
    ]


def test_mdx_comments_over_blank_lines_esm_later_and_markdown_inside_jsx(tmp_path):
    text = (
        "{/*\nhttps://example.com/hidden\n\nhttps://example.com/hidden-too\n*/}\n"  # 1-5
        "<Callout>\nSee [the docs](https://example.com/docs).\n</Callout>\n"  # 6-8
        "\n"
        "export const more = {\n  url: 'https://example.com/in-export',\n}\n"  # 10-12
        "\n"
        "https://example.com/last\n"  # 14
    )
    path = write(tmp_path, "page.mdx", text)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/docs", "the docs", 7),
        ("https://example.com/last", None, 14),
    ]


def test_mdx_hrefs_in_jsx_with_anchor_text_and_no_esm_comments_or_src(tmp_path):
    path = write(tmp_path, "post.mdx", MDX)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/jsx-a?x=1&y=2", "JSX anchor", 8),
        ("https://example.com/braces", "Next link", 8),
        ("https://example.com/multiline-card", None, 11),
        ("https://example.com/md-in-mdx", "a link", 14),
    ]


# -- HTML ----------------------------------------------------------------------


def test_html_anchors_resolved_against_base(tmp_path):
    path = write(tmp_path, "page.html", HTML_PAGE)
    assert triples(links_in_file(path), path) == [
        ("https://example.org/abs", "Absolute link", 4),
        ("https://example.com/docs/guide/intro.html", "Intro", 6),
        ("https://example.com/root", "Root page", 6),
        ("https://example.org/amp?a=1&b=2", "logo", 8),
    ]


def test_html_without_base_ignores_relative_links_and_keeps_absolute_ones_as_written(tmp_path):
    text = '<p><a href="/rel">r</a> <a href="//cdn.example.com/x">p</a>\n<a href="HTTPS://Example.COM/Up">Up</a></p>'
    path = write(tmp_path, "nobase.htm", text)
    assert links_in_file(path) == [FoundLink("HTTPS://Example.COM/Up", "Up", f"{path}:2")]


def test_empty_html_file_has_no_links(tmp_path):
    assert links_in_file(write(tmp_path, "empty.html", "  \n")) == []


# -- CSV -----------------------------------------------------------------------


def test_csv_url_column_with_titles_and_record_lines(tmp_path):
    text = (
        'Title,URL,notes\n'
        '"The ""quoted"" one",https://example.com/1,x\n'
        'Second,  https://example.com/2  ,"multi\nline note"\n'
        'Third,not a url,\n'
        '\n'
        'Fourth,https://example.com/4,https://example.com/not-the-url-column\n'
    )
    path = write(tmp_path, "list.csv", text)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/1", 'The "quoted" one', 2),
        ("https://example.com/2", "Second", 3),
        ("https://example.com/4", "Fourth", 7),
    ]


def test_csv_without_url_column_takes_every_url_cell(tmp_path):
    text = "name,home,mirror\nA,https://a.example/,http://mirror.example/a\nB,n/a,https://b.example/x\n"
    path = write(tmp_path, "sites.csv", text)
    assert triples(links_in_file(path), path) == [
        ("https://a.example/", None, 2),
        ("http://mirror.example/a", None, 2),
        ("https://b.example/x", None, 3),
    ]


def test_csv_with_bom_and_semicolons_still_finds_the_url_header(tmp_path):
    text = "\ufeffURL;Title;mirror\r\nhttps://example.com/a;Café;https://example.com/mirror\r\n"
    path = write(tmp_path, "excel.csv", text.encode("utf-8"))
    assert links_in_file(path) == [FoundLink("https://example.com/a", "Café", f"{path}:2")]


# -- plain text ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["urls.txt", "reading.list", "to-check.urls", "NOTES"])
def test_plain_list_one_url_a_line_or_urls_in_the_line(tmp_path, name):
    path = write(tmp_path, name, PLAIN_LIST)
    assert triples(links_in_file(path), path) == [
        ("https://example.com/one", None, 2),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", None, 5),
        ("https://example.com/exactly-as-written.", None, 6),  # a whole line is a URL as written
        ("https://example.com/two", None, 7),
        ("https://example.com/three", None, 7),
        ("https://example.com/one", None, 9),  # one file: every occurrence
    ]


def test_undecodable_bytes_fall_back_to_latin_1(tmp_path):
    path = write(tmp_path, "old.md", "[café](https://example.com/caf%E9) \xa0https://example.com/x".encode("latin-1"))
    assert links_in_file(path) == [
        FoundLink("https://example.com/caf%E9", "café", f"{path}:1"),
        FoundLink("https://example.com/x", None, f"{path}:1"),
    ]


# -- several files ---------------------------------------------------------------


def test_links_in_files_dedupes_across_files_and_reports_bad_paths(tmp_path):
    notes = write(tmp_path, "notes.md", "[One](https://example.com/one)\n\nhttps://example.com/two\n")
    urls = write(tmp_path, "urls.txt", "https://example.com/two\nhttps://example.com/three\nhttps://example.com/one\n")
    missing = tmp_path / "missing.md"
    folder = tmp_path / "folder"
    folder.mkdir()
    links, problems = links_in_files([notes, missing, folder, urls])
    assert links == [
        FoundLink("https://example.com/one", "One", f"{notes}:1"),
        FoundLink("https://example.com/two", None, f"{notes}:3"),
        FoundLink("https://example.com/three", None, f"{urls}:2"),
    ]
    assert problems == [f"{missing}: file not found", f"{folder}: is a directory, not a file"]


def test_links_in_files_with_nothing_readable(tmp_path):
    assert links_in_files([tmp_path / "a.txt"]) == ([], [f"{tmp_path / 'a.txt'}: file not found"])


# -- new sources -----------------------------------------------------------------


def test_new_sources_skips_configured_and_pairs_normalised_duplicates():
    configured = (make_source("https://example.com/one"), make_source("https://www.example.org/page/"))
    exact = FoundLink("https://example.com/one", "One", "a.md:1")
    twin = FoundLink("http://example.org/page#intro", "Page", "a.md:2")
    fresh = FoundLink("https://example.com/new", None, "a.md:3")
    also_fresh = FoundLink("https://example.com/one/more", None, "a.md:4")
    new, duplicates = new_sources([exact, twin, fresh, also_fresh], configured)
    assert new == [fresh, also_fresh]
    assert duplicates == [(twin, configured[1])]


def test_new_sources_with_nothing_configured():
    found = [FoundLink("https://example.com/a", None, "x")]
    assert new_sources(found, ()) == (found, [])


# -- appending to config.toml ------------------------------------------------------

CONFIG = """\
# my config  \t
[storage]
dir = "snapshots"   # keep

[[sources]]
url = "https://example.com/one"
title = "One"
tags = ["a"]"""  # no newline at the end, on purpose

TRICKY = 'He said "hi" \\ back — café\tnaïve \x01\x7f'


def test_append_sources_round_trips_through_load_config(tmp_path):
    config = write(tmp_path, "config.toml", CONFIG)
    os.chmod(config, 0o640)
    links = [
        FoundLink("https://example.com/one", "already there", "notes.md:1"),
        FoundLink("https://example.com/q?a=1&b=\"2\"", TRICKY, "notes.md:4"),
        FoundLink("https://en.wikipedia.org/wiki/Foo_(bar)", None, "list.csv:2"),
        FoundLink("https://en.wikipedia.org/wiki/Foo_(bar)", "repeated", "list.csv:9"),
    ]
    assert append_sources(config, links, now=WHEN) == 2

    data = config.read_bytes()
    assert data.startswith(CONFIG.encode("utf-8"))
    added = data[len(CONFIG.encode("utf-8")):].decode("utf-8")
    comment = "# added by fetcher sources import on 2026-11-23 from notes.md, list.csv"
    assert added.startswith(f"\n\n{comment}\n[[sources]]\n")
    assert added.endswith("\n")
    loaded = load_config(config)
    assert [(s.url, s.title, s.tags) for s in loaded.sources] == [
        ("https://example.com/one", "One", ("a",)),
        ("https://example.com/q?a=1&b=\"2\"", TRICKY, ()),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", None, ()),
    ]
    assert [s.resource_id for s in loaded.sources[1:]] == [
        resource_id("https://example.com/q?a=1&b=\"2\""),
        resource_id("https://en.wikipedia.org/wiki/Foo_(bar)"),
    ]
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temporary file left


def test_append_sources_twice_keeps_crlf_and_adds_nothing_the_second_time(tmp_path):
    original = CONFIG.replace("\n", "\r\n") + "\r\n"
    config = write(tmp_path, "config.toml", original.encode("utf-8"))
    links = [FoundLink("https://example.com/two", "Two", "a.md:3")]
    assert append_sources(config, links, now=WHEN) == 1
    once = config.read_bytes()
    assert once.startswith(original.encode("utf-8"))
    assert b"\n" not in once.replace(b"\r\n", b"")
    assert append_sources(config, links, now=WHEN) == 0
    assert config.read_bytes() == once
    assert [s.title for s in load_config(config).sources] == ["One", "Two"]


def test_append_sources_refuses_what_would_break_the_config(tmp_path):
    text = 'sources = [{ url = "https://example.com/one" }]\n'
    config = write(tmp_path, "config.toml", text)
    with pytest.raises(ConfigError) as caught:
        append_sources(config, [FoundLink("https://example.com/two", None, "a.md:1")], now=WHEN)
    message = str(caught.value)
    assert str(config) in message and "\n" not in message
    assert config.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_append_sources_to_a_missing_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        append_sources(tmp_path / "nope.toml", [FoundLink("https://example.com/", None, "a.md:1")])


def test_toml_string_escapes_every_character_toml_needs_escaped():
    value = "".join(chr(code) for code in range(0x20)) + '\x7f"\\ é — 🙂'
    assert tomllib.loads(f"x = {toml_string(value)}")["x"] == value


def test_append_sources_through_a_symlink_updates_the_target_and_keeps_the_link(tmp_path):
    real = write(tmp_path, "real.toml", CONFIG + "\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    assert append_sources(link, [FoundLink("https://example.com/two", None, "a.md:1")], now=WHEN) == 1
    assert link.is_symlink()
    assert [s.url for s in load_config(real).sources] == ["https://example.com/one", "https://example.com/two"]
