"""The `logtaild` command: flags, config merge, logging set-up, and exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error (a bad flag, a bad config, a port in
use). Every error is one line on stderr, never a traceback. This is the one module that imports
click and the only one that turns exceptions into exit codes; nothing imports it.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import click

from logtaild.config import FORMATS, REPORTS, Config, ConfigError, FileConfig, check, dump_yaml, load
from logtaild.count import core
from logtaild.export.errors import ListenError
from logtaild.run import modes
from logtaild.run.fileformats import check_formats

EPILOG = """\b
Examples:
  logtaild --file /var/log/nginx/access.tsv
  logtaild --file /var/log/nginx/access.log               # the format is detected (tsv, json, combined)
  logtaild --file access.log --format nginx --log-format '$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time'
  logtaild --file access.log --interval 2 --listen 127.0.0.1:10181
  logtaild --file access.log --from-start --once          # one report over the whole file
  logtaild --config /etc/logtaild/config.yaml --state-file /var/lib/logtaild/state.json
  logtaild --check-config /etc/logtaild/config.yaml
  # from cron, every minute, with counters for node_exporter's textfile collector:
  logtaild --file access.log --once --state-file /var/lib/logtaild/cron.json --textfile /var/lib/node_exporter/textfile/logtaild.prom
  # without systemd:
  logtaild --config /etc/logtaild/config.yaml --detach --pidfile /run/logtaild.pid --log-file /var/log/logtaild.log

Reports go to stdout, logs to stderr; /metrics is served on port 10181 of every interface unless
--listen says otherwise.
"""  # noqa: E501 (the cron example stays one command on one line, to copy as it is)


class UsageFailure(Exception):
    """Raised to exit 2 with one line."""


# click hands the options over as **kwargs of the types its decorators declare, which it cannot
# express in a type: they stay `Any` from there to `dataclasses.replace`
def _overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, as Config field values."""
    out: dict[str, Any] = {}
    for name in ("listen", "interval", "state_file", "web_config", "report"):
        if options.get(name) is not None:
            out[name] = options[name]
    if options.get("from_start"):
        out["from_start"] = True
    if options.get("file"):
        out["files"] = tuple(_file_config(path, options) for path in options["file"])
    return out


def _file_config(path: str, options: dict[str, Any]) -> FileConfig:
    """A `--file` entry with `--format` and `--log-format`; a log format alone says its server by its
    syntax (`$variable`: nginx, else apache)."""
    log_format = options.get("log_format")
    fmt = options.get("format") or ("auto" if not log_format else "nginx" if "$" in log_format else "apache")
    return FileConfig(path, format=fmt, log_format=log_format)


def effective_config(options: dict[str, Any]) -> Config:
    """The config file (if any) with the flags on top, validated."""
    base = load(options["config"]) if options.get("config") else Config()
    if (options.get("format") or options.get("log_format")) and not options.get("file"):
        raise ConfigError("--format and --log-format apply to --file; a config file sets format per file")
    config = check_formats(check(dataclasses.replace(base, **_overrides(options))))
    if not config.files:
        raise ConfigError("nothing to follow: give --file PATH or a config with files")
    return config


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=getattr(logging, level.upper()),
        format="%(asctime)s logtaild %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S",
    )


def _version(ctx: click.Context, wanted: bool) -> None:
    """`--version`: the version and the counting core. Our own option, not click.version_option, whose
    message is built at import: the version is looked up only when asked (see logtaild/__init__.py)."""
    if not wanted or ctx.resilient_parsing:
        return
    from logtaild import __version__

    click.echo(f"logtaild, version {__version__} (counting core: {core.DESCRIPTION})")
    ctx.exit()


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--file", "-f", multiple=True, metavar="PATH",
              help="Access log to follow; repeatable. Waited for if it does not exist. Its format is "
                   "detected from its first lines unless --format says it.")
@click.option("--format", "format", type=click.Choice(FORMATS), metavar="NAME",
              help=f"With --file: the log format ({', '.join(FORMATS)}; default auto: detected).")
@click.option("--log-format", metavar="STRING",
              help="With --file: the server's log_format (nginx) or LogFormat (Apache) string, as in its config.")
@click.option("--config", "-c", metavar="FILE", type=click.Path(dir_okay=False),
              help="YAML config file; flags override it.")
@click.option("--check-config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Validate FILE, print the effective config and exit.")
@click.option("--interval", type=float, metavar="SECONDS",
              help="Report period (default 10; fractions allowed).")
@click.option("--listen", metavar="[HOST]:PORT", help="Where /metrics is served (default :10181).")
@click.option("--from-start", is_flag=True, help="Read files that already exist from their start.")
@click.option("--report", type=click.Choice(REPORTS), metavar="COLUMNS",
              help="The report's columns: counts (the fixed format, default) or latency (adds p50 p95 p99 "
                   "mean_ms after the QPS).")
@click.option("--once", is_flag=True, help="Read to the end, print one report, exit; no HTTP server.")
@click.option("--state-file", metavar="PATH", help="Checkpoint file: resume where the last run stopped.")
@click.option("--web-config", metavar="FILE", type=click.Path(dir_okay=False),
              help="TLS / mTLS / basic auth for the HTTP server (Prometheus exporter-toolkit format).")
@click.option("--detach", is_flag=True,
              help="Run in the background (hosts without systemd; ignored under systemd). Needs --pidfile.")
@click.option("--pidfile", metavar="PATH", help="With --detach: the daemon's pid, locked; removed at exit.")
@click.option("--log-file", metavar="PATH",
              help="With --detach: where log lines and reports go (default: syslog via /dev/log).")
@click.option("--textfile", metavar="PATH",
              help="With --once and --state-file: cumulative counters for node_exporter's textfile "
                   "collector (PATH should end in .prom).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="With --once and --state-file: how long to wait for an overlapping run (default 10), "
                   "then exit 0 without counting.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, wanted: _version(ctx, wanted), help="Show the version and exit.")
def command(**options: Any) -> None:
    """Follow a rotating web access log: a per-route/per-status QPS report on stdout every
    --interval seconds, and Prometheus metrics on /metrics."""
    _setup_logging(options["log_level"])
    if core.PROBLEM:
        raise click.UsageError(core.PROBLEM)
    core.warn_if_fallback(logging.getLogger("logtaild"))
    if options.get("check_config"):
        config = check_formats(check(load(options["check_config"])))
        if config.web_config:
            from logtaild.export.webconfig import load_web_config  # ssl and bcrypt: only when there is one

            load_web_config(config.web_config)  # certificates and hashes checked too
        click.echo(dump_yaml(config), nl=False)
        return
    if not options.get("once"):  # the web config checked before --detach forks: errors reach the terminal
        web_config = effective_config(options).web_config
        if web_config:
            from logtaild.export.webconfig import load_web_config

            load_web_config(web_config)
    sys.exit(modes.run(options, effective_config))  # foreground, --detach, --once, cron (modes.py)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning every expected error into one line and an exit code."""
    try:
        command.main(args=argv, prog_name="logtaild", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        _fail(exc.format_message(), 2)
    except (ConfigError, ListenError) as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"logtaild: error: {message}", err=True)
    sys.exit(code)
