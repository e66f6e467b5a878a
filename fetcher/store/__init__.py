"""Where snapshots live: the SQLite store, its schema, atomic files and the
run lock. Builds on core."""
