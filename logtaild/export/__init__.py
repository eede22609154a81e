"""Export, reading counts only (never tail/ or run/): snapshot types, metric families, the fast text
renderer (exposition), the prometheus-client adapter (promclient, the one module importing it) and
collector, the HTTP app and server, the web config, and the status page."""
