"""Readable text from bytes: type sniffing, charsets, HTML and PDF, the
bounded worker pool, and the soft-404 rules. Builds on core."""
