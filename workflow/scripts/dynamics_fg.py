"""Rule dynamics_fg: FG self-diffusion with its error, and the bead VACF from the fine FG run."""

import pandas as pd

from thermocg import io, logs, mapping, observables

log = logs.to_file(snakemake.log[0])
window = (snakemake.params.observables["msd_fit_start"], snakemake.params.observables["msd_fit_end"])
dynamics = snakemake.params.dynamics
beads = io.load_frames(snakemake.input.beads)
diffusion = observables.diffusion_with_error(beads["positions"], beads["box"], beads["time"], *window,
                                             n_groups=dynamics["error_groups"])
fine = mapping.map_frames(io.load_frames(snakemake.input.fine))
lag, vacf, v2 = observables.velocity_autocorrelation(fine["positions"], fine["box"], fine["time"],
                                                     dynamics["vacf_max_lag"])
summary = {"temperature_K": float(beads["temperature"]), "diffusion": {k: float(v) for k, v in diffusion.items()},
           "mean_v2_nm2_per_ps2": v2, "vacf_frame_interval_ps": float(fine["time"][1] - fine["time"][0]),
           "units": {"D_nm2_per_ps": "nm^2/ps (x1000 = 1e-5 cm^2/s)", "vacf": "normalised, 1 at lag 0"}}
io.write_json(snakemake.output.summary, summary)
io.write_table(snakemake.output.vacf, pd.DataFrame({"lag_ps": lag, "vacf": vacf}))
log.info("D_FG = %.4g +- %.2g nm^2/ps", diffusion["D_nm2_per_ps"], diffusion["D_error_nm2_per_ps"])
