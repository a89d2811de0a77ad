"""Rule dynamics_cg: D with its error and the bead VACF of one model under one friction law at one T."""

from thermocg import cgmd, io, logs

log = logs.to_file(snakemake.log[0])
params = snakemake.params
temperature = float(snakemake.wildcards.T)
gamma = cgmd.read_friction(snakemake.input.friction, temperature)
summary, vacf = cgmd.dynamics_run(
    snakemake.input.model, snakemake.input.beads, temperature, params.reference_temperature, params.cgmd, gamma,
    (params.observables["msd_fit_start"], params.observables["msd_fit_end"]), params.seed,
    params.dynamics["production"], params.dynamics["vacf_max_lag"], params.dynamics["error_groups"], snakemake.threads)
summary.update(model=snakemake.wildcards.model, law=snakemake.wildcards.law, temperature_K=temperature)
io.write_json(snakemake.output.summary, summary)
io.write_table(snakemake.output.vacf, vacf)
log.info("%s", summary)
