"""Rule sweep_summary: the sweep's combined table and figure."""

from pathlib import Path

from thermocg import io, logs, plots, sweep

log = logs.to_file(snakemake.log[0])
table = sweep.summarize(snakemake.input.rows, snakemake.input.scores)
io.write_table(snakemake.output.table, table, comment=(
    "parameter sweep of the thermal response fit; score, score_se: held-out score of dF/dbeta at T0, (kJ/mol)^4/nm^2,\n"
    "higher is better, 0 = predicting zero (thermocg.metrics.response_score); score_below_best, score_below_best_se:\n"
    "the best combination's score minus this one's, paired on the same frames; force_rmse: kJ/(mol nm)"))
plots.sweep(table, snakemake.output.figure, str(Path(snakemake.output.figure).with_suffix(".pdf")))
log.info("\n%s", table.to_string())
