"""The export side's exceptions that the CLI turns into exit codes, in a module of their own so that
the CLI can catch them without importing the HTTP server (a `--once` run never starts one)."""
from __future__ import annotations


class ListenError(Exception):
    """The listen address cannot be bound (port in use, bad host)."""
