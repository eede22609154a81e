"""A fleet, with the real engines: six logtaild hosts in two sites, each fed by the simulator; a Prometheus per
site (external label `site`) scraping its three hosts and running deploy/prometheus/rules; a global Prometheus
federating both sites with deploy/prometheus/federation.yml; and, as the second path, every host pushing its
series with remote_write into one VictoriaMetrics.

What the test copies change: 1s scrape and evaluation intervals, `for:` of the alerts divided by 60 (as in
test_e2e_stack.py: tests/support/stack.py), the targets; logtaild pushes every second.

Proven here, with exact line counts (the simulator says how many lines it wrote; the files on disk, rotated
ones included, are counted per route and status and must add up to that):
- site a's error incident on /blog fires LogtaildHighErrorRatio (critical) in site a's Prometheus, not in b's,
  and shows in the global SLO query (`job_route:logtaild_http_errors:ratio_rate5m{site="a"}`);
- site b's Prometheus and VictoriaMetrics are stopped and restarted while the writers go on: the global view
  recovers, and the pushes logtaild queued and retried meanwhile reach VictoriaMetrics with their own
  timestamps (samples exist for the time it was down);
- after the writers stop, the fleet-wide requests per route and the 5xx ratio per route equal the lines
  written, exactly, both from the global Prometheus (`sum by (route)` over the federated counters) and from
  VictoriaMetrics (the pushed counters), per site too;
- no push failed or was dropped, and every host retried, by logtaild's own remote_write self-metrics.

As root, the same fleet runs again with each site (its hosts and its Prometheus) in a network namespace of
its own, on a bridge made by the test: scrapes stay inside the site, federation and pushes cross the
bridge, and the totals are still exact.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.support.daemon import Daemon, Simulator, _Reader, free_port
from tests.support.stack import (
    Prometheus,
    PrometheusAPI,
    _Server,
    http_ok,
    prometheus_test_config,
    stop_all,
    wait_until,
)
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

SITES = {"a": ("a1", "a2", "a3"), "b": ("b1", "b2", "b3")}
RATE = 15                   # lines per second per host
INCIDENT = "/blog"          # site a: half of /blog's requests become 500s, from the start
FEDERATION = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "federation.yml"


class VictoriaMetrics(_Server, PrometheusAPI):
    """Single-node VictoriaMetrics on 127.0.0.1: /api/v1/write receives, /api/v1/query answers."""

    name = "victoria-metrics"

    def __init__(self, binary: str, workdir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        port = port or free_port()
        # latencyOffset 0: by default the last 30s are hidden from queries (to let late samples arrive)
        _Server.__init__(self, [binary, f"-httpListenAddr={host}:{port}", f"-storageDataPath={workdir / 'vm'}",
                                "-retentionPeriod=1d", "-search.latencyOffset=0s", "-search.disableCache"],
                         workdir, port)
        self.url = f"http://{host}:{port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
        return http_ok(f"{self.url}/health")


def count_lines(log: Path) -> Counter[tuple[str, str]]:
    """(route, status) of every line the simulator wrote to `log` and its rotated files."""
    counts: Counter[tuple[str, str]] = Counter()
    for path in log.parent.glob(log.name + "*"):
        for line in path.read_text().splitlines():
            fields = line.split("\t")
            counts[fields[1].split(" ")[1], fields[2]] += 1
    return counts


def by_route(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("route", ""): float(r["value"][1]) for r in result}


def site_config(tmp: Path, site: str, targets: list[str]) -> Path:
    config = prometheus_test_config(tmp / f"site-{site}" / "prometheus", static_targets=targets, file_sd_targets=[],
                                    alertmanager="127.0.0.1:9", interval="1s", for_scale=60)
    doc = yaml.safe_load(config.read_text())
    doc["global"]["external_labels"] = {"site": site}
    del doc["alerting"]  # the alert states are read from the rule manager (/api/v1/alerts)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def global_config(tmp: Path, sites: list[str]) -> Path:
    """deploy/prometheus/federation.yml with the sites' addresses and a 1s interval."""
    doc = yaml.safe_load(FEDERATION.read_text())
    doc["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (job,) = doc["scrape_configs"]
    job["static_configs"] = [{"targets": sites}]
    (tmp / "global").mkdir()
    path = tmp / "global" / "federation.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def host_config(tmp: Path, host: str, site: str, port: int, vm: str, address: str = "127.0.0.1") -> Path:
    path = tmp / f"{host}.yaml"
    path.write_text(yaml.safe_dump({
        "files": [{"path": str(tmp / f"{host}-access.log")}],
        "slo": [{"route": ".*", "availability": 0.99}],
        "remote_write": [{"url": f"{vm}/api/v1/write", "interval": 1, "timeout": 2,
                          "external_labels": {"job": "logtaild", "instance": f"{address}:{port}", "site": site},
                          "queue": {"min_backoff": 0.2, "max_backoff": 2}}],
    }))
    return path


def assert_exact_totals(tmp: Path, written: dict[str, int], glob: PrometheusAPI,
                        vm: VictoriaMetrics) -> set[str]:
    """The lines on disk add up to what each writer said it wrote; the fleet-wide and per-site requests per
    route and 5xx ratio per route, from the global Prometheus and from VictoriaMetrics, equal them exactly
    (waiting for the last scrape and push). Returns the routes."""
    lines = {host: count_lines(tmp / f"{host}-access.log") for host in written}
    assert {host: sum(c.values()) for host, c in lines.items()} == written
    expected: dict[str, Counter[tuple[str, str]]] = {"": Counter()}
    for site, hosts in SITES.items():
        expected[site] = sum((lines[h] for h in hosts), Counter())
        expected[""] += expected[site]
    routes = {route for route, _status in expected[""]}

    def totals(counts: Counter[tuple[str, str]], errors: bool = False) -> dict[str, float]:
        out = {route: 0.0 for route in routes}
        for (route, status), n in counts.items():
            if not errors or status.startswith("5"):
                out[route] += n
        return out

    def vm_query(expr: str) -> list[dict]:
        return vm.api("query", {"query": expr, "nocache": "1"})["result"]

    for name, query in (("the global Prometheus", glob.query), ("VictoriaMetrics", vm_query)):
        for site in ("", "a", "b"):
            match = f'job="logtaild",site="{site}"' if site else 'job="logtaild"'
            requests = f"sum by (route) (logtaild_http_requests_total{{{match}}})"
            want = totals(expected[site])
            wait_until(lambda q=query, r=requests, w=want: by_route(q(r)) == w, 30,
                       f"{name}: requests per route{' of site ' + site if site else ''} = {want}")
            errors = f'sum by (route) (logtaild_http_requests_total{{{match},status=~"5.."}})'
            ratio = by_route(query(f"{errors} / {requests}"))
            bad = totals(expected[site], errors=True)
            assert ratio == {route: bad[route] / want[route] for route in routes if bad[route]}, (name, site)
    return routes


def test_fleet_of_two_sites_federated_and_pushed(tmp_path: Path) -> None:
    prometheus_bin = require_tool("prometheus", "prometheus")
    vm_bin = require_tool("victoria-metrics", "victoria-metrics")
    started = time.monotonic()
    stops = []
    try:
        vm = VictoriaMetrics(vm_bin, tmp_path)
        stops.append(vm.stop)
        daemons: dict[str, Daemon] = {}
        for site, hosts in SITES.items():
            for host in hosts:
                port = free_port()
                daemons[host] = Daemon("--config", str(host_config(tmp_path, host, site, port, vm.url)),
                                       "--interval", "60", port=port)
                stops += [daemons[host].kill, daemons[host].stop]
        sites: dict[str, Prometheus] = {}
        for site, hosts in SITES.items():
            config = site_config(tmp_path, site, [f"127.0.0.1:{daemons[h].port}" for h in hosts])
            sites[site] = Prometheus(prometheus_bin, tmp_path / f"site-{site}", config)
            stops.append(sites[site].stop)
        glob = Prometheus(prometheus_bin, tmp_path / "global",
                          global_config(tmp_path, [f"127.0.0.1:{p.port}" for p in sites.values()]))
        stops.append(glob.stop)
        for daemon in daemons.values():
            daemon.wait_ready()
        for server in (vm, *sites.values(), glob):
            server.wait_ready()

        sims: dict[str, Simulator] = {}
        for i, host in enumerate(daemons):
            incident = ["--incident", f"errors@{INCIDENT}:0:300"] if host in SITES["a"] else []
            sims[host] = Simulator("--output-file", str(tmp_path / f"{host}-access.log"), "--rate", str(RATE),
                                   "--latency", "--seed", str(10 + i), "--log-rotation-interval", "10",
                                   "--duration", "300", *incident)
            stops.append(lambda sim=sims[host]: sim.proc.poll() is None and sim.stop())

        # -- the incident fires site a's alert, not site b's, and shows in the global SLO query
        def alerts(site: str) -> set[tuple[str, str, str]]:
            return {(a["labels"]["alertname"], a["labels"]["severity"], a["state"])
                    for a in sites[site].alerts() if a["labels"].get("route") == INCIDENT}
        wait_until(lambda: ("LogtaildHighErrorRatio", "critical", "firing") in alerts("a"), 60,
                   "site a's LogtaildHighErrorRatio to fire")
        assert not {a for a in alerts("b") if a[0] == "LogtaildHighErrorRatio"}
        fired_at = time.monotonic() - started

        # -- site b's Prometheus and VictoriaMetrics go away for a while and come back on their ports, with
        # their data; the writers go on meanwhile: what happens then must not be lost
        port_b = sites["b"].port
        sites["b"].stop()
        vm.stop()
        vm_down = time.time()
        time.sleep(4)
        vm_up = time.time()
        vm = VictoriaMetrics(vm_bin, tmp_path, port=vm.port)
        stops.append(vm.stop)
        sites["b"] = Prometheus(prometheus_bin, tmp_path / "site-b", tmp_path / "site-b" / "prometheus" /
                                "prometheus.yml", port=port_b)
        stops.append(sites["b"].stop)
        vm.wait_ready()
        sites["b"].wait_ready()

        slo = f'job_route:logtaild_http_errors:ratio_rate5m{{route="{INCIDENT}"}}'

        def global_slo() -> dict[str, float]:
            return {r["metric"]["site"]: float(r["value"][1]) for r in glob.query(slo)}
        wait_until(lambda: global_slo().keys() == {"a", "b"}, 30, "both sites in the global SLO query")
        ratios = global_slo()
        assert ratios["a"] > 0.20 and ratios["b"] < 0.05, ratios

        # -- the writers stop; every line they wrote is counted, once, in both global views
        written = {host: sim.stop() for host, sim in sims.items()}
        routes = assert_exact_totals(tmp_path, written, glob, vm)

        # -- logtaild's own account of its pushes: retried while VictoriaMetrics was down, nothing failed or
        # dropped; the pushes queued meanwhile arrived later with their own timestamps (no hole in the data)
        held = round(vm_up - vm_down) - 1
        for host, daemon in daemons.items():
            assert daemon.value("logtaild_remote_write_retries_total") > 0, host
            instance = f"127.0.0.1:{daemon.port}"
            (during,) = vm.api("query", {"query": f'count_over_time(logtaild_build_info{{instance="{instance}"}}'
                                                  f"[{held}s])", "time": f"{vm_up:.3f}", "nocache": "1"})["result"]
            assert float(during["value"][1]) >= held - 1, (host, during)
            assert daemon.value("logtaild_remote_write_samples_total", result="sent") > 0, host
            assert daemon.value("logtaild_remote_write_samples_total", result="failed") == 0, host
            assert daemon.value("logtaild_remote_write_samples_total", result="dropped") == 0, host
            assert daemon.value("logtaild_remote_write_last_success_timestamp_seconds") > time.time() - 10, host
        def vm_query(expr: str) -> list[dict]:
            return vm.api("query", {"query": expr, "nocache": "1"})["result"]
        assert len(vm_query('count by (instance) (logtaild_http_requests_total{job="logtaild"})')) == 6
        # figures for docs/deploying.md: series per host, bytes per push (the last pushes' size, about)
        per_host = [float(r["value"][1]) for r in vm_query('count by (instance) ({job="logtaild"})')]
        first = next(iter(daemons.values()))
        pushes = first.value("logtaild_remote_write_samples_total", result="sent") / max(per_host)
        print(f"\nfleet: alert fired after {fired_at:.0f}s; {sum(written.values())} lines; {len(routes)} routes; "
              f"{min(per_host):.0f}-{max(per_host):.0f} series per host; about "
              f"{first.value('logtaild_remote_write_sent_bytes_total') / pushes / 1000:.1f} kB per push "
              f"({pushes:.0f} pushes); done in {time.monotonic() - started:.0f}s")
    finally:
        try:
            stop_all(stops)
        finally:
            shutil.rmtree(tmp_path / "vm", ignore_errors=True)


# --------------------------------------------------------------------------- the sites in network namespaces


class Netns:
    """A bridge in the root namespace and one network namespace per site plugged into it (a veth pair each),
    made by the test and removed after it: the sites reach each other and the root namespace only through
    the bridge, which has no other port (nothing leaves the machine)."""

    def __init__(self, sites: list[str]) -> None:
        tag = os.getpid() % 100000
        net = f"10.213.{tag % 250}"
        self.bridge, self.root = f"ltb{tag}", f"{net}.1"
        self.names = {site: f"lt{tag}{site}" for site in sites}
        self.addresses = {site: f"{net}.{i + 2}" for i, site in enumerate(sites)}

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)

    def up(self) -> None:
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"{self.root}/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for site, ns in self.names.items():
            outside, inside = f"{ns}0", f"{ns}1"
            self._ip("netns", "add", ns)
            self._ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._ip("link", "set", outside, "master", self.bridge)
            self._ip("link", "set", outside, "up")
            self._ip("link", "set", inside, "netns", ns)
            self._ip("-n", ns, "addr", "add", f"{self.addresses[site]}/24", "dev", inside)
            self._ip("-n", ns, "link", "set", inside, "up")
            self._ip("-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in self.names.values():  # the veth pairs go with their namespace
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10)

    def prefix(self, site: str) -> list[str]:
        return ["ip", "netns", "exec", self.names[site]]


class NsDaemon(Daemon):
    """logtaild in a site's namespace, listening on the site's address (reachable through the bridge)."""

    def __init__(self, prefix: list[str], address: str, port: int, *args: str) -> None:
        self.port, self.address = port, address
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "logtaild", *args, "--listen",
                                      f"{address}:{self.port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=Path(__file__).resolve().parents[2])
        self.out, self.err = _Reader(self.proc.stdout), _Reader(self.proc.stderr)
        self.out.start()
        self.err.start()

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> str:
        import urllib.request
        with urllib.request.urlopen(f"http://{self.address}:{self.port}{path}", timeout=timeout) as resp:
            return resp.read().decode()


class NsPrometheus(_Server, PrometheusAPI):
    """A site Prometheus in the site's namespace, listening on the site's address."""

    name = "prometheus"

    def __init__(self, prefix: list[str], binary: str, workdir: Path, config: Path, address: str) -> None:
        port = free_port()
        _Server.__init__(self, [*prefix, binary, f"--config.file={config}",
                                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                                f"--web.listen-address={address}:{port}"], workdir, port)
        self.url = f"http://{address}:{port}"


def test_fleet_with_each_site_in_its_own_network_namespace(tmp_path: Path) -> None:
    """The same fleet with each site's hosts and Prometheus in a network namespace of their own: scrapes stay
    inside the site, the global Prometheus federates across the bridge, the hosts push across it into
    VictoriaMetrics; the totals are still exact."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_tool("ip", "iproute2")
    prometheus_bin = require_tool("prometheus", "prometheus")
    vm_bin = require_tool("victoria-metrics", "victoria-metrics")
    net = Netns(list(SITES))
    stops = [net.down]
    try:
        try:
            net.up()
        except subprocess.CalledProcessError as exc:  # a container without CAP_NET_ADMIN, say
            pytest.skip(f"cannot make network namespaces: {exc.stderr.strip()}")
        vm = VictoriaMetrics(vm_bin, tmp_path, host=net.root)
        stops.append(vm.stop)
        daemons: dict[str, Daemon] = {}
        sites: dict[str, NsPrometheus] = {}
        for site, hosts in SITES.items():
            address = net.addresses[site]
            for host in hosts:
                port = free_port()  # free in the site's namespace too: nothing else runs there
                config = host_config(tmp_path, host, site, port, vm.url, address)
                daemons[host] = NsDaemon(net.prefix(site), address, port, "--config", str(config), "--interval", "60")
                stops += [daemons[host].kill, daemons[host].stop]
            config = site_config(tmp_path, site, [f"{address}:{daemons[h].port}" for h in hosts])
            sites[site] = NsPrometheus(net.prefix(site), prometheus_bin, tmp_path / f"site-{site}", config, address)
            stops.append(sites[site].stop)
        glob = Prometheus(prometheus_bin, tmp_path / "global", global_config(tmp_path, [
            f"{net.addresses[site]}:{p.port}" for site, p in sites.items()]))
        stops.append(glob.stop)
        for daemon in daemons.values():
            daemon.wait_ready()
        for server in (vm, *sites.values(), glob):
            server.wait_ready()
        sims = {host: Simulator("--output-file", str(tmp_path / f"{host}-access.log"), "--rate", str(RATE),
                                "--latency", "--seed", str(20 + i), "--duration", "8")
                for i, host in enumerate(daemons)}
        for sim in sims.values():
            stops.append(lambda sim=sim: sim.proc.poll() is None and sim.stop())
        written = {host: sim.wait(60) for host, sim in sims.items()}
        assert_exact_totals(tmp_path, written, glob, vm)
        # the scrapes went to the sites' own addresses, the pushes came from there
        for site, prometheus in sites.items():
            targets = {t["labels"]["instance"] for t in prometheus.targets() if t["health"] == "up"}
            assert targets == {f"{net.addresses[site]}:{daemons[h].port}" for h in SITES[site]}
        instances = vm.api("query", {"query": 'count by (instance) (logtaild_build_info)', "nocache": "1"})
        assert {r["metric"]["instance"].rsplit(":", 1)[0] for r in instances["result"]} == set(net.addresses.values())
    finally:
        try:
            stop_all(stops)
        finally:
            shutil.rmtree(tmp_path / "vm", ignore_errors=True)


# --------------------------------------------------------------------------- Prometheus as the receiver


class PrometheusReceiver(_Server, PrometheusAPI):
    """Prometheus with its remote-write receiver on (`/api/v1/write`) and nothing to scrape."""

    name = "prometheus"

    def __init__(self, binary: str, workdir: Path) -> None:
        port = free_port()
        config = workdir / "receiver.yml"
        config.write_text("global: {}\n")
        _Server.__init__(self, [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
                         workdir, port)


def test_a_host_pushes_into_prometheus_remote_write_receiver(tmp_path: Path) -> None:
    """The same push, received by Prometheus itself (2.42's receiver): the totals it stores equal the lines,
    per route and status, with the external labels on every series."""
    receiver = PrometheusReceiver(require_tool("prometheus", "prometheus"), tmp_path).wait_ready()
    log = tmp_path / "access.log"
    lines = [f"10.0.0.1\tGET /r{i % 3}\t{500 if i % 7 == 0 else 200}\t{i}\t{i % 50}\n" for i in range(700)]
    log.write_text("".join(lines))
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({
        "files": [{"path": str(log), "format": "tsv"}], "from_start": True,
        "remote_write": [{"url": f"{receiver.url}/api/v1/write", "interval": 1, "timeout": 2,
                          "external_labels": {"job": "logtaild", "instance": "host1:10181", "site": "a"}}],
    }))
    daemon = Daemon("--config", str(config), "--interval", "60")
    try:
        daemon.wait_ready()
        expected = Counter((line.split("\t")[1].split(" ")[1], line.split("\t")[2]) for line in lines)
        query = 'sum by (route, status) (logtaild_http_requests_total{job="logtaild",instance="host1:10181",site="a"})'

        def stored() -> dict[tuple[str, str], float]:
            return {(r["metric"]["route"], r["metric"]["status"]): float(r["value"][1])
                    for r in receiver.query(query)}
        wait_until(lambda: stored() == {key: float(n) for key, n in expected.items()}, 30,
                   f"Prometheus to hold {dict(expected)}")
        assert daemon.value("logtaild_remote_write_samples_total", result="failed") == 0
        assert daemon.value("logtaild_remote_write_samples_total", result="sent") > 0
    finally:
        daemon.stop()
        receiver.stop()
