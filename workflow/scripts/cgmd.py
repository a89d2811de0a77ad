"""Rule cgmd: CG MD of one model at one temperature (see thermocg.cgmd, thermocg.md)."""

from thermocg import cgmd, io, logs

logs.to_file(snakemake.log[0])
params = snakemake.params
status = cgmd.simulate_or_record_blow_up(
    snakemake.input.model, snakemake.input.beads, float(snakemake.wildcards.T), params.reference_temperature,
    params.cgmd, cgmd.read_friction(snakemake.input.friction, float(snakemake.wildcards.T)),
    outputs={"trajectory": snakemake.output.trajectory, "topology": snakemake.output.topology,
             "thermo": snakemake.output.thermo, "checkpoint": params.checkpoint},
    seed=params.seed, threads=snakemake.threads, frames_every_step=params.frames_every_step,
)
io.write_json(snakemake.output.status, status)
