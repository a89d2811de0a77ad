"""What a user sees of a finished run: the report's tables and the summary printed at its end.

- :func:`html_table`: a TSV written by :func:`thermocg.io.write_table` as an HTML page, for the
  Snakemake report (which shows HTML but offers a TSV only as a download).
- :func:`run_summary`: where the results are, how to build the report, and the headline numbers.
"""

import html
from pathlib import Path

import pandas as pd

from thermocg import io

REPORT_COMMAND = "snakemake --report results/report.html"


def html_table(tsv_path, html_path, title):
    """Write the table at ``tsv_path`` as an HTML page titled ``title``, its comment lines (units)
    listed below it."""
    notes = [line[2:] for line in Path(tsv_path).read_text().splitlines() if line.startswith("# ")]
    table = io.read_table(tsv_path).to_html(index=False, na_rep="n/a", float_format="{:.4g}".format, border=0)
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    style = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
             " th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd} th{background:#eee}")
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body><h3>{html.escape(title)}</h3>\n{table}\n<ul>{notes_html}</ul>"
            "</body></html>\n")
    io.atomic_write(html_path, lambda tmp: Path(tmp).write_text(page))


def _number(value):
    """A column of the summary: "-" where there is no value (e.g. fm_oracle has no other T)."""
    return f"{'-':>10}" if pd.isna(value) else f"{value:>10.3g}"


def run_summary(table_path):
    """A few lines for the end of a run: where the figures, the table and the report are, and per
    model the mean eps_g at its training temperatures and at the others (if ``table_path``, the
    transferability TSV, exists)."""
    lines = [
        "thermocg: run complete.",
        "  figures:  results/figures/*.png (and .pdf)",
        f"  table:    {table_path} (units in its header; .json beside it for scripts)",
        f"  report:   {REPORT_COMMAND}, then open that file in a browser",
    ]
    if not Path(table_path).exists():
        return "\n".join(lines)
    table = io.read_table(table_path)
    floor = table["eps_g_floor"].mean()
    lines.append(f"  mean eps_g (RDF error; FG noise floor {floor:.3g}), where the CG MD stayed stable:")
    lines.append(f"    {'model':<20} {'trained T':>10} {'other T':>10} {'unstable':>9}")
    for model, rows in table.groupby("model", sort=True):
        trained = rows.loc[rows["trained_here"], "eps_g"].mean()
        other = rows.loc[~rows["trained_here"], "eps_g"].mean()
        unstable = int((~rows["stable"]).sum())
        lines.append(f"    {model:<20} {_number(trained)} {_number(other)} {unstable:>9d}")
    return "\n".join(lines)
