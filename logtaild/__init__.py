"""logtaild: follow a rotating web access log, report per-route QPS and export Prometheus metrics."""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("logtaild")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
