"""Process-wide CLI state set while parsing (whether to show tracebacks)."""

DEBUG = False
