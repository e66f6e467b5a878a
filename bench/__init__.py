"""Benchmarks for fetcher: `python -m bench [--quick]` (see bench/README.md)."""
