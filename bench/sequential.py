"""Peer: the plain script anyone would write. One URL after another: httpx GET,
then trafilatura.extract() with its defaults on HTML; anything else (the PDFs)
is counted and skipped, as trafilatura does not read PDFs.

    python -m bench.sequential urls.txt

Prints JSON counts on stdout.
"""

from __future__ import annotations

import json
import sys

import httpx
import trafilatura


def main() -> None:
    urls = [line.strip() for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    counts = {"urls": len(urls), "extracted": 0, "empty": 0, "skipped_not_html": 0, "errors": 0, "text_chars": 0}
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        for url in urls:
            try:
                response = client.get(url)
            except httpx.HTTPError:
                counts["errors"] += 1
                continue
            if response.status_code != 200:
                counts["errors"] += 1
            elif "html" not in response.headers.get("content-type", ""):
                counts["skipped_not_html"] += 1
            else:
                text = trafilatura.extract(response.text, url=url)
                counts["extracted" if text else "empty"] += 1
                counts["text_chars"] += len(text or "")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
