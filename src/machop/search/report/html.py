"""One self-contained report.html: summary, best trials, embedded plots, every trial, failures."""

from __future__ import annotations

import base64
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from machop.io_atomic import write_text_atomic
from machop.search import records
from machop.search.report import study_info as info
from machop.search.report.proxy_fidelity import READING, TITLE, proxy_fidelity, too_few_line
from machop.search.report.tables import (
    base_cells,
    best_cells,
    best_headers,
    best_title,
    best_trials,
    no_feasible_text,
    trial_rows,
)

PLOT_CAPTIONS = {"history": "Optimization history", "pareto": "Pareto front",
                 "heatmaps": "Metric heatmaps", "sweep": "Metrics against the searched parameter",
                 "importance": "Parameter importance",
                 "proxy_fidelity": "Proxy costs against costs measured on the exported model"}
REASON_PREVIEW = 80

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.subtitle { color: #555; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top;
         white-space: pre-line; }
th { background: #f3f4f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th { width: 12rem; }
tr.state-FAIL td { background: #fdecea; } tr.state-PRUNED td { background: #fff8e1; }
tr.infeasible td { color: #777; }
tr.reference td { background: #f0f4fa; font-style: italic; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
pre.reason { white-space: pre-wrap; margin: 0; font-size: 0.8rem; }
"""


def _cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = info.format_number(value) if value is not None else ""
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def html_table(headers: list[str], rows: list[list[Any]], row_classes: list[str] | None = None,
               table_class: str = "") -> str:
    """An escaped HTML table in a horizontally scrolling box."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    classes = row_classes or [""] * len(rows)
    body = "\n".join(f'<tr class="{escape(css)}">{"".join(_cell(value) for value in row)}</tr>'
                     for row, css in zip(rows, classes))
    css = f' class="{escape(table_class)}"' if table_class else ""
    return f'<div class="scroll"><table{css}><thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table></div>'


def _objectives_text(study: optuna.Study) -> str:
    recorded = info.objectives(study)
    parts = [f"{objective.get('name')} ({objective.get('direction', '?')}, scale {objective.get('scale', 1.0)})"
             for objective in recorded]
    if info.sums_scaled_metrics(study):
        return "one objective, the sum of scaled metrics: " + " + ".join(parts)
    return ", ".join(parts) if parts else ", ".join(info.objective_names(study))


def _state_counts(study: optuna.Study) -> str:
    counts = Counter(trial.state.name for trial in info.all_trials(study))
    states = [state.name for state in TrialState if counts.get(state.name)]
    feasible = sum(info.is_feasible(trial) for trial in info.complete_trials(study))
    text = ", ".join(f"{state} {counts[state]}" for state in states) or "none"
    return f"{text} (total {sum(counts.values())}; feasible COMPLETE {feasible})"


def _best_text(study: optuna.Study) -> str:
    trials = best_trials(study)
    if not trials:
        return no_feasible_text(study).replace(" yet", "", 1)
    if info.is_multi_objective(study):
        numbers = ", ".join(f"#{trial.number}" for trial in trials[:10])
        return f"Pareto front of {len(trials)} trial(s): {numbers}" + (", …" if len(trials) > 10 else "")
    return f"{info.format_number(trials[0].value)} (trial #{trials[0].number})"


def _summary_rows(study: optuna.Study) -> list[list[str]]:
    model, space = info.model_info(study), info.space_choices(study)
    rows = [["Study", study.study_name],
            ["Model", str(model.get("model", "-"))], ["Dataset", str(model.get("dataset", "-"))],
            ["Direction(s)", ", ".join(info.directions(study))],
            ["Objectives", _objectives_text(study)], ["Trials", _state_counts(study)],
            ["Best", _best_text(study)]]
    constraints = info.constraints_line(study)
    if constraints is not None:
        rows.insert(-1, ["Constraints", constraints.removeprefix("Constraints: ")])
    base = info.base_summary(study.user_attrs.get(records.STUDY_BASE), study)
    if base:
        rows.append(["Float base", "\n".join(line.strip() for line in base)])
    if space:
        size = 1
        for choices in space.values():
            size *= max(len(choices), 1)
        name = (study.user_attrs.get(records.STUDY_SPACE) or {}).get("name", "-")
        rows.insert(3, ["Search space", f"{name}: {len(space)} parameters, {size:,} points"])
    return rows


def _summary_section(study: optuna.Study) -> str:
    rows = _summary_rows(study)
    body = "\n".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows)
    return f'<h2>Summary</h2>\n<table class="summary"><tbody>{body}</tbody></table>'


def _best_section(study: optuna.Study) -> str:
    trials = best_trials(study)
    title = escape(best_title(study, len(trials)))
    rows, classes = [best_cells(t) for t in trials], [""] * len(trials)
    base = base_cells(study)
    if base is not None:
        rows, classes = [*rows, base], [*classes, "reference"]
    note = "" if trials else "<p>No feasible COMPLETE trial.</p>\n"
    if not rows:
        return f"<h2>{title}</h2>\n{note}"
    reference = (f"<p>The last row, {escape(info.BASE_LABEL)}, is the untransformed base model scored "
                 "like a trial: the reference of the search.</p>\n" if base is not None else "")
    return f"<h2>{title}</h2>\n{note}{reference}" + html_table(best_headers(study), rows, classes)


def _fidelity_section(study: optuna.Study) -> str:
    correlations = proxy_fidelity(study)
    if not correlations:
        return ""
    line = too_few_line(correlations)
    if line is not None:
        return f"<h2>Proxy fidelity</h2>\n<p>{escape(line)}.</p>"
    proxies = list(dict.fromkeys(c.proxy for c in correlations))
    reals = list(dict.fromkeys(c.real for c in correlations))
    cells = {(c.proxy, c.real): c.text() for c in correlations}
    rows = [[proxy, *(cells.get((proxy, real), "-") for real in reals)] for proxy in proxies]
    return (f"<h2>Proxy fidelity</h2>\n<p>{escape(TITLE.split(': ', 1)[1])} over the study's COMPLETE "
            f"trials. {escape(READING)}.</p>\n" + html_table(["proxy \\ real", *reals], rows))


def _image_tag(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _plots_section(plots: dict[str, Path | None]) -> str:
    figures = [_image_tag(Path(path), PLOT_CAPTIONS.get(name, name))
               for name, path in plots.items() if path is not None and Path(path).is_file()]
    return "<h2>Plots</h2>\n" + ("\n".join(figures) or "<p>No plot applies to this study yet.</p>")


def _short(value: Any) -> Any:
    text = value if isinstance(value, str) else None
    return text if text is None or len(text) <= REASON_PREVIEW else text[:REASON_PREVIEW] + "…"


def _trials_section(study: optuna.Study) -> str:
    rows = trial_rows(study)
    if not rows:
        return "<h2>All trials</h2>\n<p>The study has no trials.</p>"
    headers = list(rows[0])
    cells = [[_short(v) if k == "fail_reason" else v for k, v in row.items()] for row in rows]
    classes = [f"state-{row['state']}" + (" infeasible" if row["feasible"] is False else "") for row in rows]
    return f"<h2>All trials ({len(rows)})</h2>\n" + html_table(headers, cells, classes)


def _failed_section(study: optuna.Study) -> str:
    failed = [trial for trial in info.all_trials(study) if trial.state == TrialState.FAIL]
    if not failed:
        return "<h2>Failed trials</h2>\n<p>No trial failed.</p>"
    items = "\n".join(
        f"<tr><td>{trial.number}</td><td>{escape(info.format_mapping(info.trial_config(trial), ', '))}</td>"
        f'<td><pre class="reason">{escape(info.fail_reason(trial) or "no reason recorded")}</pre></td></tr>'
        for trial in failed)
    return (f"<h2>Failed trials ({len(failed)})</h2>\n<div class=\"scroll\"><table><thead><tr><th>Trial</th>"
            f"<th>Configuration</th><th>Reason</th></tr></thead>\n<tbody>{items}</tbody></table></div>")


def render_html(study: optuna.Study, plots: dict[str, Path | None]) -> str:
    """The whole report as one HTML document with inline CSS and embedded images."""
    title = escape(f"Search report: {study.study_name}")
    sections = [_summary_section(study), _best_section(study), _fidelity_section(study), _plots_section(plots),
                _trials_section(study), _failed_section(study)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
            f'<p class="subtitle">{escape(info.study_title(study))}</p>\n' + "\n".join(sections)
            + "\n</body>\n</html>\n")


def write_html(study: optuna.Study, out_dir: Path, plots: dict[str, Path | None]) -> Path:
    """Write out_dir/report.html and return its path."""
    return write_text_atomic(Path(out_dir) / "report.html", render_html(study, plots))
