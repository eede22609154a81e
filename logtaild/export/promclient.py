"""The one module that imports prometheus-client: the names the rest of export/ uses from it.

Keeping them here means one place to read when prometheus-client changes: which of its functions the
fast renderer (exposition.py) copies the behaviour of, and which of its encoders that renderer can
stand in for (`fast_format`). Everything else in export/ imports these names from here.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest, make_wsgi_app, write_to_textfile
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES, escape_label_name
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

__all__ = [
    "CollectorRegistry",
    "Encoder",
    "Exemplar",
    "Metric",
    "ProcessCollector",
    "choose_encoder",
    "escape_label_name",
    "fast_format",
    "float_to_go",
    "gzip_accepted",
    "make_wsgi_app",
    "write_to_textfile",
]

Encoder = Callable[[CollectorRegistry], bytes]  # what `choose_encoder` picks: registry -> exposition

#: a number as prometheus-client writes it ("+Inf", "1.0e+06", ...); untyped upstream, typed here
float_to_go: Callable[[float], str] = floatToGoString


def fast_format(encoder: Encoder) -> tuple[bool, bool] | None:
    """(openmetrics, any_names) for logtaild/export/exposition.py to write what `encoder` would, or
    None when that renderer cannot (an encoder or escaping scheme it does not copy).

    `any_names`: the renderer writes every label name as `encoder` does (the plain text format, and
    the "underscores" scheme, whose `escape_label_name` it uses); with "allow-utf-8" that holds only
    for names in the legacy set.
    """
    if encoder is generate_latest:
        return False, True
    if (isinstance(encoder, partial) and not encoder.args
            and encoder.func in (generate_latest, openmetrics_latest)
            and encoder.keywords.get("escaping") in (UNDERSCORES, ALLOWUTF8)):
        # OpenMetrics' `version` only matters to native histograms, which we have none of
        return encoder.func is openmetrics_latest, encoder.keywords["escaping"] == UNDERSCORES
    return None
