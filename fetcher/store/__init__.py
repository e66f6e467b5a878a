"""Where snapshots live: the store on SQLite or PostgreSQL (one Store, the
engines' differences in dialect), its schema and migrations, bodies in files,
a table or S3, atomic files and the run lock. Builds on core."""
