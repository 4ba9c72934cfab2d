"""The command line: the daemon's entry point, a client of its API, service files."""
