"""Talking to the web: the one HTTP client, per-host politeness, retries, the
address guard, robots.txt and the archive client. Builds on core."""
