"""`machop export`: write the model as ONNX (or hls4ml) and check it against the simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out
from machop.errors import ConfigError

BACKENDS = "Vivado (default), Vitis or oneAPI"
LAYER_COLUMNS_FIRST = ("node", "kind")


def _layers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Exported layers", title_justify="left")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    return table


def _parity_table(parity: Any, split: str) -> Table:
    table = Table(title=f"Parity with the simulation ({parity.samples} {split} samples)", title_justify="left")
    for column in ("agreement", "max abs diff", "differing samples", "bit-exact"):
        table.add_column(column, justify="right")
    table.add_row(f"{parity.agreement:.4f}", f"{parity.max_abs_diff:.3g}", f"{parity.differing_samples:,}",
                  "yes" if parity.bit_exact else "no")
    return table


def _per_layer_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Parity per quantized operand", title_justify="left")
    for column in ("node", "max abs diff", "differing values", "values"):
        table.add_column(column, justify="left" if column == "node" else "right")
    for row in rows:
        table.add_row(str(row["node"]), f"{row['max_abs_diff']:.3g}", f"{row['differing_values']:,}",
                      f"{row['values']:,}")
    return table


@config_command
def export_command(
    args: ConfigArgs,
    format_name: Annotated[str, typer.Option("--format", help="onnx or hls4ml.")] = "onnx",
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder to write (default: <project>/exported/<format>/).", show_default=False)] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the parity check.")] = False,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Parity per quantized node too.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 2 (writing nothing) when the parity check fails: onnx below --threshold, "
                         "hls4ml not bit-exact (or below --threshold when given).")] = False,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", help="Least prediction agreement --strict accepts (onnx default 0.995).",
        show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="Split of the parity check.")] = "validation",
    backend: Annotated[Optional[str], typer.Option(
        "--backend", help=f"hls4ml backend: {BACKENDS}.", show_default=False)] = None,
    io_type: Annotated[Optional[str], typer.Option(
        "--io-type", help="hls4ml io_parallel (default) or io_stream.", show_default=False)] = None,
    reuse_factor: Annotated[Optional[int], typer.Option(
        "--reuse-factor", help="hls4ml reuse factor (default 1).", show_default=False)] = None,
    csim: Annotated[bool, typer.Option("--csim", help="hls4ml: compile and run the C simulation.")] = False,
    allow_float: Annotated[bool, typer.Option(
        "--allow-float", help="hls4ml: accept float layers (as wide ap_fixed).")] = False,
    trial: Annotated[Optional[int], typer.Option(
        "--trial", help="Export this trial's candidate of the --config search (rebuilt as the search "
        "built it).", show_default=False)] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="With --trial: the search's Optuna storage URL (default: its journal file).",
        show_default=False)] = None,
    study_name: Annotated[Optional[str], typer.Option(
        "--study-name", help="With --trial: the study (default: the project name).", show_default=False)] = None,
) -> None:
    """Export the model (after --load, the config's passes, or --trial N of its search) and check it."""
    from machop import api

    options: dict[str, Any] = {}
    if format_name == "hls4ml":
        given = {"backend": backend, "io_type": io_type, "reuse_factor": reuse_factor}
        options = {key: value for key, value in given.items() if value is not None}
        options.update({"csim": csim, "allow_float": allow_float})
    if trial is None and (storage is not None or study_name is not None):
        raise ConfigError("--storage and --study-name choose the study of --trial; pass --trial N too")
    resolved = resolve_and_show(args, from_checkpoint=True)
    settings = {"out": out_dir, "check": not no_check, "per_layer": per_layer, "strict": strict,
                "threshold": threshold, "split": split, "options": options}
    if trial is not None:
        from machop.search.trial_export import export_trial

        result = export_trial(resolved.config, trial, format_name, storage=storage, study_name=study_name,
                              **settings)
    else:
        result = api.export(resolved.config, format_name, **settings)
    if result.layers:
        out.print(_layers_table(result.layers))
    if result.parity is not None:
        out.print(_parity_table(result.parity, split))
        if result.parity.per_layer:
            out.print(_per_layer_table(result.parity.per_layer))
    for note in [*result.notes, *(result.parity.notes if result.parity is not None else [])]:
        out.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    for path in result.files:
        out.print(f"Wrote {path}", soft_wrap=True, markup=False, highlight=False)
