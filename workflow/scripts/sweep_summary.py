"""Rule sweep_summary: the sweep's combined table and figure."""

from pathlib import Path

from thermocg import io, logs, plots, sweep

log = logs.to_file(snakemake.log[0])
table = sweep.summarize(snakemake.input)
io.write_table(snakemake.output.table, table, comment="parameter sweep of the thermal response fit")
plots.sweep(table, snakemake.output.figure, str(Path(snakemake.output.figure).with_suffix(".pdf")))
log.info("\n%s", table.to_string())
