"""The benchmark's workloads, built the same way in every process that needs them
(the origin server, the floor, the scorer): which document each source serves,
on which loopback host, with which validators, on which night.

Source i lives at http://127.0.0.{2 + i % hosts}:{port}/s/{i}. Every tenth source
(i % 10 == 9) is a PDF, taken in turn from the PDF fixtures; the rest are corpus
pages drawn with a seeded RNG (so pages repeat once there are more sources than
pages). Each body gets a per-source HTML/PDF comment appended after the document
(`<!-- bench source i v1 -->`), so every source has its own bytes and SHA-256 —
as 2,000 real sources would — while the extracted text is the corpus page's.

Night 2 (W2, "the same sources the next night"), by a hash of i modulo 20:
- 1 in 20 (5%) changed: its comment says v2, so the body and its ETag change;
- 3 in 20 (15%) never send validators: 200 with the same body ("unchanged");
- 16 in 20 (80%) send an ETag and answer a matching If-None-Match with 304.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

# The shared corpus sits beside the repository (../shared/corpus); FETCHER_CORPUS overrides.
SHARED = Path(os.environ.get("FETCHER_CORPUS") or Path(__file__).resolve().parent.parent.parent / "shared" / "corpus")
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SEED = 20261123
FIRST_HOST = 2  # 127.0.0.2 is the first host; 127.0.0.1 is left alone


@dataclass(frozen=True)
class Doc:
    key: str  # corpus id or PDF file name
    kind: str  # "html" or "pdf"
    body: bytes
    gold: str | None = None  # articleBody for pages
    sentences: tuple[str, ...] = ()  # known sentences for PDFs
    url: str | None = None  # the page's original URL (for reference only)


@dataclass(frozen=True)
class Corpus:
    pages: tuple[Doc, ...]
    pdfs: tuple[Doc, ...]
    where: str  # "shared corpus" or "test fixtures (fallback)"

    def all(self) -> tuple[Doc, ...]:
        return self.pages + self.pdfs


def load_corpus() -> Corpus:
    """The 181 corpus pages and 5 PDFs; the tests' 4 + 4 when the shared corpus is missing."""
    pages_dir = SHARED / "article-extraction-benchmark"
    pdf_dir = SHARED / "pdf"
    where = f"shared corpus ({SHARED})"
    if not (pages_dir / "ground-truth.json").is_file() or not (pdf_dir / "expected-text.json").is_file():
        pages_dir, pdf_dir = FIXTURES / "pages", FIXTURES / "pdf"
        where = f"FALLBACK: tests/fixtures (4 pages, 4 PDFs) because {SHARED} is missing"
    truth = json.loads((pages_dir / "ground-truth.json").read_text(encoding="utf-8"))
    html_dir = pages_dir / "html" if (pages_dir / "html").is_dir() else pages_dir
    pages = []
    for key in sorted(truth):
        path = html_dir / f"{key}.html.gz"
        if path.is_file():
            pages.append(Doc(key, "html", gzip.decompress(path.read_bytes()), truth[key]["articleBody"],
                             url=truth[key].get("url")))
    expected = json.loads((pdf_dir / "expected-text.json").read_text(encoding="utf-8"))
    pdfs = [Doc(name, "pdf", (pdf_dir / name).read_bytes(), sentences=tuple(sentences))
            for name, sentences in sorted(expected.items()) if (pdf_dir / name).is_file()]
    return Corpus(tuple(pages), tuple(pdfs), where)


@dataclass(frozen=True)
class Source:
    index: int
    host: str  # "127.0.0.N"
    doc: Doc
    policy: str  # "etag", "no-validators", "changes"


def policy_of(index: int) -> str:
    bucket = (index * 2654435761 & 0xFFFFFFFF) % 20
    return "changes" if bucket == 0 else "no-validators" if bucket <= 3 else "etag"


def mixed(corpus: Corpus, count: int, hosts: int, seed: int = SEED) -> list[Source]:
    """W1/W2/W3: `count` sources over `hosts` hosts, 10% PDFs."""
    rng = random.Random(seed)
    sources = []
    for index in range(count):
        if index % 10 == 9 and corpus.pdfs:
            doc = corpus.pdfs[(index // 10) % len(corpus.pdfs)]
        else:
            doc = corpus.pages[rng.randrange(len(corpus.pages))]
        sources.append(Source(index, host_ip(index, hosts), doc, policy_of(index)))
    return sources


def quality(corpus: Corpus, pages: int | None, hosts: int) -> list[Source]:
    """W4: each corpus page once (the first `pages` of them, sorted by id), then every PDF once."""
    docs = list(corpus.pages[:pages] if pages else corpus.pages) + list(corpus.pdfs)
    return [Source(index, host_ip(index, hosts), doc, "etag") for index, doc in enumerate(docs)]


def build(name: str, corpus: Corpus, count: int, hosts: int) -> list[Source]:
    if name == "mixed":
        return mixed(corpus, count, hosts)
    if name == "quality":
        return quality(corpus, count or None, hosts)
    raise ValueError(f"unknown workload {name!r}")


def host_ip(index: int, hosts: int) -> str:
    return f"127.0.0.{FIRST_HOST + index % hosts}"


def host_ips(hosts: int) -> list[str]:
    return [f"127.0.0.{FIRST_HOST + n}" for n in range(hosts)]


def url_of(source: Source, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{source.host}:{port}/s/{source.index}"


def version(source: Source, night: int) -> int:
    return 2 if source.policy == "changes" and night >= 2 else 1


def suffix(source: Source, night: int, marked: bool = True) -> bytes:
    """The per-source bytes appended after the document (empty for W4's pristine pages)."""
    if not marked:
        return b""
    text = f"bench source {source.index} v{version(source, night)}"
    return f"\n<!-- {text} -->\n".encode() if source.doc.kind == "html" else f"\n%{text}\n".encode()


def etag(source: Source, night: int) -> str | None:
    if source.policy == "no-validators":
        return None
    return f'"s{source.index}-v{version(source, night)}"'


def content_type(doc: Doc) -> str:
    return "application/pdf" if doc.kind == "pdf" else "text/html; charset=utf-8"
