"""Rule sweep_fit: one combination of the parameter sweep (see thermocg.sweep)."""

from thermocg import io, logs, sweep

log = logs.to_file(snakemake.log[0])
row = sweep.fit_point(
    dict(snakemake.params.point), snakemake.config, snakemake.input.beads, snakemake.input.energies,
    list(snakemake.input.oracles), snakemake.output.model, snakemake.output.curve,
    snakemake.params.checkpoint, snakemake.threads,
)
io.write_table(snakemake.output.response, row)
log.info("\n%s", row.to_string())
