"""Rule diffusion_fg: the reference MSD and self-diffusion coefficient of one temperature (see
thermocg.observables.self_diffusion)."""

from thermocg import io, logs, observables

log = logs.to_file(snakemake.log[0])
beads = io.load_frames(snakemake.input.beads)
msd, diffusion = observables.self_diffusion(beads, snakemake.params.observables)
io.write_table(snakemake.output.msd, msd)
# in the shape of a summary (temperature_K, diffusion), as fit_friction reads it
io.write_json(snakemake.output.diffusion, {"temperature_K": float(beads["temperature"]), "diffusion": diffusion})
log.info("D = %.4g +- %.2g nm^2/ps (MSD fit over %g-%g ps)", diffusion["D_nm2_per_ps"], diffusion["D_error_nm2_per_ps"],
         diffusion["fit_start_ps"], diffusion["fit_end_ps"])
