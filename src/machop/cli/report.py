"""`machop report`: regenerate a search's tables, plots and HTML from its storage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from machop.console import out
from machop.errors import SearchError


def _find_storage(directory: Path) -> Path:
    from machop.search.study import DEFAULT_STORAGE_FILE

    for candidate in (directory / DEFAULT_STORAGE_FILE, directory / "search" / DEFAULT_STORAGE_FILE):
        if candidate.is_file():
            return candidate
    raise SearchError(f"no {DEFAULT_STORAGE_FILE} in {str(directory)!r} or its search/ folder; "
                      "pass a project or search folder, or --storage URL --study-name NAME")


def _study_name(storage, given: str | None) -> str:
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if given:
        if given not in names:
            raise SearchError(f"study {given!r} is not in the storage (studies: {', '.join(names)})")
        return given
    if len(names) != 1:
        raise SearchError(f"the storage holds {len(names)} studies ({', '.join(names)}); "
                          "choose one with --study-name")
    return names[0]


def report_command(
    directory: Annotated[Optional[Path], typer.Argument(
        help="Project folder (or its search/ folder).", show_default=False)] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="Optuna storage URL instead of a folder.", show_default=False)] = None,
    study_name: Annotated[Optional[str], typer.Option(
        "--study-name", help="Study to report (default: the only one).", show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Where to write (default: the search folder).", show_default=False)] = None,
) -> None:
    """Read-only: tables, plots and report.html from a search's storage, without running trials."""
    import optuna

    from machop.search.report import print_best, write_search_outputs
    from machop.search.study import open_storage

    if directory is None and storage is None:
        raise SearchError("give a project folder or --storage URL")
    if storage is None:
        path = _find_storage(directory)
        store, _ = open_storage(f"journal:{path}", path.parent)
        target = out_dir or path.parent
    else:
        store, _ = open_storage(storage, Path("."))
        target = out_dir or Path("report")
    study = optuna.load_study(study_name=_study_name(store, study_name), storage=store)
    print_best(study, out)
    for name, written in write_search_outputs(study, target).items():
        out.print(f"{name}: {written}")
