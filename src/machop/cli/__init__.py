"""The machop command line."""
