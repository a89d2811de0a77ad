"""Rule observables_cg: the CG trajectory's observables, computed exactly as the FG ones."""

from thermocg import cgmd, io, logs, observables

log = logs.to_file(snakemake.log[0])
config = snakemake.config
beads = cgmd.trajectory_beads(snakemake.input.trajectory, snakemake.input.topology, config["cgmd"], float(snakemake.wildcards.T))
tables, summary = observables.compute_all(beads, config["observables"])
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
log.info("D = %.4g nm^2/ps", summary["diffusion"]["D_nm2_per_ps"])
