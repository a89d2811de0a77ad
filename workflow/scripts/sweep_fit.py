"""Rule sweep_fit: one combination of the parameter sweep (see thermocg.sweep)."""

from thermocg import io, logs, sweep

log = logs.to_file(snakemake.log[0])
params = snakemake.params
# the finite-difference truth needs only the temperatures next to T0
config = {"seed": params.seed, "network": params.network, "training": params.training,
          "reference_temperature": params.reference_temperature, "temperatures": list(params.neighbours)}
row = sweep.fit_point(
    dict(params.point), config, snakemake.input.beads, snakemake.input.energies,
    list(snakemake.input.oracles), snakemake.output.model, snakemake.output.curve,
    params.checkpoint, snakemake.threads,
)
io.write_table(snakemake.output.response, row)
log.info("\n%s", row.to_string())
