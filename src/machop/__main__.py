"""`python -m machop` runs the command line."""

from machop.cli.app import main

main()
