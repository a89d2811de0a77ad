"""Rule fit_friction: Langevin friction of a model such that D_CG(T0) = D_FG(T0) (see thermocg.cgmd)."""

import json

from thermocg import cgmd, io, logs

log = logs.to_file(snakemake.log[0])
params = snakemake.params
if params.friction == "fit":
    trials = params.trials
    target = json.loads(open(snakemake.input.fg_summary).read())["diffusion"]["D_nm2_per_ps"]
    record = cgmd.fit_friction(snakemake.input.model, snakemake.input.beads, trials["reference_temperature"],
                               target, trials["cgmd"], trials["seed"])
else:
    record = {"friction_per_ps": float(params.friction), "law": "constant gamma from the config"}
io.write_json(snakemake.output.friction, record)
log.info("friction: %s", record)
