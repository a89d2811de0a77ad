"""Rule observables_cg: the CG trajectory's observables, computed exactly as the FG ones."""

from thermocg import cgmd, io, logs, observables

log = logs.to_file(snakemake.log[0])
status = cgmd.read_status(snakemake.input.status)
if status["stable"]:
    beads = cgmd.trajectory_beads(snakemake.input.trajectory, snakemake.input.topology, snakemake.params.cgmd,
                                  float(snakemake.wildcards.T))
    tables, summary = observables.compute_all(beads, snakemake.params.observables)
    log.info("D = %.4g +- %.2g nm^2/ps", summary["diffusion"]["D_nm2_per_ps"], summary["diffusion"]["D_error_nm2_per_ps"])
else:  # a blown-up run has no observables: empty tables, and the summary says why
    tables, summary = observables.empty_tables(), {}
    log.warning("the CG MD blew up (%s): no observables", status["reason"])
summary["cgmd"] = status
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
