"""The `machop` command line: one module per command, errors as one line with exit status 2."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Optional

import typer

from machop.cli import state
from machop.cli.analyze import analyze_command
from machop.cli.compare_samplers import compare_samplers_command
from machop.cli.export import export_command
from machop.cli.info import info_command
from machop.cli.report import report_command
from machop.cli.search import search_command
from machop.cli.test import test_command
from machop.cli.train import train_command
from machop.cli.transform import transform_command

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="machop",
    help="Quantize, resize, measure and search neural networks for cheap inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    """machop's installed version, from the package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("machop")
    except PackageNotFoundError:  # running from a source tree that was never installed
        from machop import __version__

        return __version__


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"machop {package_version()}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[Optional[bool], typer.Option(
        "--version", help="Print machop's version and exit.", callback=_print_version,
        is_eager=True)] = None,
) -> None:
    """Quantize, resize, measure and search neural networks for cheap inference."""


app.command("train")(train_command)
app.command("test")(test_command)
app.command("transform")(transform_command)
app.command("analyze")(analyze_command)
app.command("search")(search_command)
app.command("compare-samplers")(compare_samplers_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("info")(info_command)


def _fail(message: str, exc: BaseException | None = None) -> int:
    from machop.console import print_error

    if state.DEBUG and exc is not None:
        traceback.print_exception(exc)
    print_error(message)
    return EXIT_USAGE


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit status instead of exiting."""
    from machop.errors import MachopError, exception_line

    argv = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    state.DEBUG = "--debug" in argv
    command = typer.main.get_command(app)
    try:
        # Typer turns Ctrl-C into Exit(130), which click returns (not raises) outside standalone mode.
        returned = command.main(args=argv, prog_name="machop", standalone_mode=False)
        if returned == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:
        return _fail(exc.format_message(), exc)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted") and EXIT_INTERRUPTED
    except MachopError as exc:
        return _fail(str(exc), exc)
    except OSError as exc:  # a path the user named cannot be read or written (permissions, a file in the way)
        return _fail(exception_line(exc), exc)
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
