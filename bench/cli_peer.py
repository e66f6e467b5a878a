"""The trafilatura CLI as the peer runs it, trusting the CA in SSL_CERT_FILE.

    python -m bench.cli_peer --input-file urls.txt --parallel 80 ...

trafilatura 2.3 downloads with urllib3 and trusts only certifi's bundle
(`certifi.where()`, read at each pool's creation), so a loopback origin with a CA
made for the run would fail verification. This runs `trafilatura.cli.main`
unchanged, with `certifi.where` answering SSL_CERT_FILE when it is set."""

from __future__ import annotations

import os

import certifi


def main() -> None:
    bundle = os.environ.get("SSL_CERT_FILE")
    if bundle:
        certifi.where = lambda: bundle  # type: ignore[assignment]
    from trafilatura.cli import main as trafilatura_main

    trafilatura_main()


if __name__ == "__main__":
    main()
