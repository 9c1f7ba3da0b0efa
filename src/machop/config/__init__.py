"""Configuration: schema, TOML loading, precedence and the effective-config table."""

from machop.config.resolve import ResolvedConfig, load_config, resolve_config, table_rows
from machop.config.schema import RunConfig
from machop.config.toml_io import dumps_toml, read_toml

__all__ = ["ResolvedConfig", "RunConfig", "dumps_toml", "load_config", "read_toml",
           "resolve_config", "table_rows"]
