"""Rule dynamics_of_cgmd: D with its error and the bead VACF of a model's own CG MD run at one T."""

import json
from pathlib import Path

from thermocg import cgmd, io, logs

log = logs.to_file(snakemake.log[0])
params = snakemake.params
temperature = float(snakemake.wildcards.T)
summary, vacf = cgmd.dynamics_of_run(
    json.loads(Path(snakemake.input.status).read_text()), snakemake.input.trajectory, snakemake.input.topology,
    params.cgmd, cgmd.read_friction(snakemake.input.friction, temperature),
    (params.observables["msd_fit_start"], params.observables["msd_fit_end"]), params.dynamics["vacf_max_lag"],
    params.dynamics["error_groups"])
summary.update(model=snakemake.wildcards.model, law=snakemake.wildcards.law, temperature_K=temperature)
io.write_json(snakemake.output.summary, summary)
io.write_table(snakemake.output.vacf, vacf)
log.info("%s", summary)
