"""Local control endpoint: the daemon serves NDJSON on a Unix socket; the CLI calls it."""
