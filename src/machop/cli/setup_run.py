"""Turn parsed flags into a validated config, print it, and set up logging."""

from __future__ import annotations

import logging

from machop.cli import state
from machop.cli.console import print_config_table
from machop.cli.options import ConfigArgs


def resolve_and_show(args: ConfigArgs):
    """Resolve defaults < file < flags, print the effective-config table, configure logging."""
    from machop.config import resolve_config

    resolved = resolve_config(args.path, args.explicit)
    if resolved.config.to_debug:
        state.DEBUG = True
    configure_logging(resolved.config.log_level)
    print_config_table(resolved)
    return resolved


def configure_logging(level: str) -> None:
    """Log machop messages to stderr at `level`; quiet Optuna unless debugging."""
    logging.basicConfig(format="%(levelname)s: %(message)s", force=True)
    logging.getLogger("machop").setLevel(level.upper())
