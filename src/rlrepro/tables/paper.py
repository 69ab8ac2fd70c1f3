"""The papers' tables: every cell "mean [low, high]" over seeds (stratified bootstrap), with an optional
reference value from the user's `config/reference/*.csv` and the difference to ours, and missing runs in footers.

Computing (`estimate_cells`, `aggregate_table`) is separate from rendering (`render`: Markdown, LaTeX, HTML).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlrepro.metrics.stats import BootstrapConfig, aggregate_metrics, mean_ci, probability_of_improvement
from rlrepro.naming import display_label, display_name, method_rank


def brax_columns(reference_method: str) -> dict[str, str]:
    """The Brax table's headers, the normalised column naming the config's reference method."""
    return {**BRAX_COLUMNS, "final_normalised": f"final (÷ {display_name(reference_method)})"}


BRAX_COLUMNS = {
    "final_avg_return": "final return",
    "final_normalised": "final (÷ sac_n)",
    "forgetting": "forgetting",
    "forward_transfer": "fwd transfer",
    "model_size_rel": "model size",
    "inference_size_rel": "inference size",
}
CW_COLUMNS = {
    "final_success_last": "success (last step)",
    "final_success_any": "success (any step)",
    "forgetting": "forgetting",
    "forward_transfer": "fwd transfer",
    "model_size_rel": "model size",
    "inference_size_rel": "inference size",
}
SPARSE_COLUMNS = {
    "final_return": "return (last evals)",
    "return_rel_dense": "× dense",
    "params": "params",
    "params_rel_dense": "params × dense",
    "train_flops": "train FLOPs",
    "train_flops_rel_dense": "FLOPs × dense",
}
CELL_KEYS = ["table", "section", "row", "metric"]


@dataclass(frozen=True)
class TableSpec:
    """How one family of tables is laid out: sections (one table each), rows, and columns (metric -> label)."""

    name: str
    section: str
    row: str
    columns: dict[str, str]


def estimate_cells(
    runs: pd.DataFrame,
    spec: TableSpec,
    metrics: Sequence[str],
    cfg: BootstrapConfig,
    expected_seeds: int | None,
    expected_rows: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """One row per (section, row, metric): mean and bootstrap CI over seeds, seeds present and missing. Rows of
    the grid (`expected_rows`: (section, row) pairs) without any run appear as n/a with all their seeds missing."""
    out = []
    present = {(str(s), str(r)) for s, r in runs[[spec.section, spec.row]].drop_duplicates().itertuples(index=False)}
    for section, row in expected_rows or []:
        if (str(section), str(row)) not in present:
            out += [
                {"table": spec.name, "section": str(section), "row": str(row), "metric": metric, "mean": np.nan,
                 "low": np.nan, "high": np.nan, "n_seeds": 0, "missing_seeds": expected_seeds or 0}
                for metric in metrics
            ]  # fmt: skip
    for (section, row), group in runs.groupby([spec.section, spec.row], observed=True, sort=False):
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float) if metric in group else np.array([])
            mean, low, high = mean_ci(values, cfg)
            n = int(np.sum(~np.isnan(values)))
            out.append(
                {
                    "table": spec.name, "section": str(section), "row": str(row), "metric": metric,
                    "mean": mean, "low": low, "high": high, "n_seeds": n,
                    "missing_seeds": (expected_seeds - len(group)) if expected_seeds else 0,
                }
            )  # fmt: skip
    return pd.DataFrame(out, columns=[*CELL_KEYS, "mean", "low", "high", "n_seeds", "missing_seeds"])


def attach_reference(cells: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    """Add the user's reference values (columns section, row, metric, value) and `diff` = ours − reference."""
    cells = cells.copy()
    cells["reference"] = np.nan
    if reference is not None and len(reference):
        ref = reference.astype({"section": str, "row": str, "metric": str}).set_index(["section", "row", "metric"])
        keys = list(zip(cells["section"], cells["row"], cells["metric"], strict=True))
        cells["reference"] = [float(ref["value"].get(k, np.nan)) for k in keys]
    cells["diff"] = cells["mean"] - cells["reference"]
    return cells


def read_reference(path: str | None, section: str, row: str) -> pd.DataFrame | None:
    """A reference CSV (columns `<section>`, `<row>`[, keep_ratio], metric, value) → section/row/metric/value."""
    if not path:
        return None
    df = pd.read_csv(path)
    need = {section, row, "metric", "value"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: reference CSV needs columns {sorted(need)}, has {list(df.columns)}")
    if "keep_ratio" in df.columns:
        df[row] = [f"{m} @ {k:g}" for m, k in zip(df[row], df["keep_ratio"], strict=True)]
    return df.rename(columns={section: "section", row: "row"})[["section", "row", "metric", "value"]]


def format_number(x: float) -> str:
    if pd.isna(x):
        return "n/a"
    if abs(x) < 1e-12:
        return "0"  # floating-point residue of a difference that is zero
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def format_cell(cell: pd.Series) -> str:
    """ "mean [low, high]" (just "mean" when the interval is a point), then "(ref R, Δ D)" when a reference exists."""
    text = format_number(cell["mean"])
    if pd.notna(cell["low"]) and cell["high"] - cell["low"] > 1e-9 * max(1.0, abs(cell["mean"])):
        text += f" [{format_number(cell['low'])}, {format_number(cell['high'])}]"
    if pd.notna(cell.get("reference", np.nan)):
        text += f" (ref {format_number(cell['reference'])}, Δ {format_number(cell['diff'])})"
    return text


def wide_sections(cells: pd.DataFrame, columns: dict[str, str]) -> list[tuple[str, pd.DataFrame, str]]:
    """Per section: (title, table of formatted cells with rows in paper order, footer about seeds)."""
    sections = []
    for section, group in cells.groupby("section", sort=False):
        group = group[group["metric"].isin(columns)]
        table = group.assign(text=[format_cell(c) for _, c in group.iterrows()]).pivot(
            index="row", columns="metric", values="text"
        )
        table = table.reindex(columns=[c for c in columns if c in table.columns]).rename(columns=columns)
        table = table.fillna("—")  # a cell a row does not have (e.g. the reference method's P(X > reference))
        rows = sorted(table.index, key=lambda x: (method_rank(x.split(" @ ")[0]), x))
        table = table.loc[rows]
        seeds = group.groupby("row")["n_seeds"].max()
        missing = group.groupby("row")["missing_seeds"].max()
        table.insert(len(table.columns), "seeds", [str(int(seeds[r])) for r in rows])
        table.index = [display_label(r) for r in rows]  # the papers' names, as in every figure
        footer = ", ".join(f"{display_label(r)}: {int(missing[r])}" for r in rows if missing[r] > 0)
        note = f"Missing seeds (failed or absent runs, not averaged in): {footer}." if footer else ""
        sections.append((str(section), table, note))
    return sections


def render_markdown(cells: pd.DataFrame, columns: dict[str, str], title: str, caption: str) -> str:
    parts = [f"# {title}", "", caption, ""]
    for section, table, note in wide_sections(cells, columns):
        header = ["method", *table.columns]
        lines = [f"## {section}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join([str(i), *row]) + " |" for i, row in zip(table.index, table.to_numpy(), strict=True)]
        if note:
            lines += ["", note]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def render_latex(cells: pd.DataFrame, columns: dict[str, str], caption: str) -> str:
    """One booktabs `table` per section (needs \\usepackage{booktabs})."""
    parts = [f"% {caption}"]
    for section, table, note in wide_sections(cells, columns):
        body = table.rename_axis("method").reset_index().to_latex(index=False, escape=True)
        label = "tab:" + "".join(ch if ch.isalnum() else "-" for ch in section)
        cap = _latex_escape(section + (". " + note if note else ""))
        parts.append(f"\\begin{{table}}[t]\n\\centering\n\\caption{{{cap}}}\n\\label{{{label}}}\n{body}\\end{{table}}\n")
    return "\n".join(parts)


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def render_html(cells: pd.DataFrame, columns: dict[str, str], title: str, caption: str) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(caption)}</p>"]
    for section, table, note in wide_sections(cells, columns):
        parts.append(f"<h3>{html.escape(section)}</h3>")
        parts.append(table.rename_axis("method").to_html(escape=True, border=0, classes="rlrepro-table"))
        if note:
            parts.append(f"<p><em>{html.escape(note)}</em></p>")
    style = (
        "<style>table{border-collapse:collapse;font:13px sans-serif}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd}</style>"
    )
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}</body></html>\n"


def aggregate_table(
    runs: pd.DataFrame, metric: str, cfg: BootstrapConfig, reference: str | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """IQM, mean, median and optimality gap of `metric` across scenarios, per method, with stratified-bootstrap
    CIs over seeds (rliable), and with `reference` rliable's probability of improvement P(method > reference) over
    the scenarios both ran. Only seeds present in every scenario of the method enter its (seeds × scenarios)
    matrix; returns the cells and the matrices (for performance profiles)."""
    wides: dict[str, pd.DataFrame] = {}
    for method, group in runs.groupby("method", observed=True):
        wide = group.pivot_table(index="seed", columns="scenario", values=metric, observed=True).dropna(axis=1, how="all")
        wide = wide.dropna(axis=0, how="any")
        if wide.size:
            wides[str(method)] = wide
    scores = {method: wide.to_numpy(dtype=float) for method, wide in wides.items()}
    pairs = {}
    if reference in wides:
        for method, wide in wides.items():
            common = [c for c in wide.columns if c in wides[reference].columns]
            if method != reference and common:
                pairs[method] = (wide[common].to_numpy(dtype=float), wides[reference][common].to_numpy(dtype=float))
    improvement = probability_of_improvement(pairs, cfg)
    rows = []
    for method, stats in aggregate_metrics(scores, cfg).items():
        if method in improvement:
            stats = {**stats, "p_improvement": improvement[method]}
        for name, (point, low, high) in stats.items():
            rows.append(
                {"table": "aggregate", "section": f"across scenarios ({metric})", "row": method, "metric": name,
                 "mean": point, "low": low, "high": high, "n_seeds": scores[method].shape[0], "missing_seeds": 0}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "mean", "low", "high", "n_seeds", "missing_seeds"]), scores
