"""`check_formats`: every file entry's parser built once at start-up, its errors as `ConfigError`s.

config.py is a leaf and cannot compile a `log_format` (count/ does that); this is where the two
meet, so a format string logtaild cannot compile, or a label field the format lacks, stops the
start (exit code 2) with the key named, as every other config error does.
"""
from __future__ import annotations

from logtaild.config import Config, ConfigError
from logtaild.count.logformat import FormatError
from logtaild.count.parsers import make_parser


def check_formats(config: Config) -> Config:
    """Build each file's parser and drop it; raises ConfigError naming the key (`files[0].log_format: ...`)."""
    for index, file_config in enumerate(config.files):
        try:
            make_parser(file_config)
        except FormatError as exc:
            raise ConfigError(f"files[{index}].{exc.key}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"files[{index}]: {exc}") from None
    return config
