"""haflowd: a local-first orchestrator of AI-assisted missions."""

__version__ = "0.1.0"
