"""Rule friction_lines: trial runs of a model at two frictions at each temperature (see thermocg.cgmd)."""

from thermocg import cgmd, io, logs

log = logs.to_file(snakemake.log[0])
params = snakemake.params
trials = params.trials
labels = [str(t) for t in params.temperatures]
keys = [f"{float(t):g}" for t in labels]
record = cgmd.friction_lines(dict(zip(keys, snakemake.input.models)), dict(zip(keys, snakemake.input.beads)),
                             [float(t) for t in labels], trials["reference_temperature"], trials["cgmd"],
                             trials["seed"], snakemake.threads)
io.write_json(snakemake.output.lines, record)
log.info("trial runs: %s", record["lines"])
