"""logtaild: follow a rotating web access log, report per-route QPS and export Prometheus metrics.

`__version__` is looked up on first use, not at import: importlib.metadata costs about a tenth of a
second of start-up, which a `logtaild --once` from cron pays for nothing.
"""
__version__: str  # set by __getattr__ on first use


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'logtaild' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("logtaild")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found
