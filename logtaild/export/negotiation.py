"""What a scraper asks /metrics for: the protobuf exposition format (`wants_protobuf`), or text.

Kept apart from protobuf.py, which loads the protobuf runtime and the generated classes (about 8 MB
of memory): a process is asked for the format at every scrape, but only one that a protobuf-capable
Prometheus scrapes ever needs the encoder, so server.py imports this and loads protobuf.py on the
first such scrape.
"""
from __future__ import annotations

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
_MEDIA = "application/vnd.google.protobuf"


def wants_protobuf(accept: str) -> bool:
    """Whether an Accept header prefers the delimited MetricFamily protobuf format to every text format.

    Only an explicit `application/vnd.google.protobuf` range with `proto=io.prometheus.client.MetricFamily`
    and `encoding=delimited` counts (`*/*` is a browser's or curl's, and gets text); it wins when no
    other range has a higher `q`.
    """
    proto_q, other_q = 0.0, 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        options = {name.strip().lower(): value.strip().strip('"')
                   for name, _eq, value in (p.partition("=") for p in params)}
        try:
            q = float(options.get("q", "1"))
        except ValueError:
            q = 0.0
        if media.lower() == _MEDIA:
            if (options.get("proto") == "io.prometheus.client.MetricFamily"
                    and options.get("encoding") == "delimited"):
                proto_q = max(proto_q, q)
        elif media:
            other_q = max(other_q, q)
    return proto_q > 0 and proto_q >= other_q
