"""Rule cgmd: CG MD of one model at one temperature (see thermocg.cgmd, thermocg.md)."""

from thermocg import cgmd, io, logs

logs.to_file(snakemake.log[0])
config = snakemake.config
status = cgmd.simulate_or_record_blow_up(
    snakemake.input.model, snakemake.input.beads, float(snakemake.wildcards.T), config["reference_temperature"],
    config["cgmd"], cgmd.read_friction(snakemake.input.friction),
    outputs={"trajectory": snakemake.output.trajectory, "topology": snakemake.output.topology,
             "thermo": snakemake.output.thermo, "checkpoint": snakemake.params.checkpoint},
    seed=config["seed"], threads=snakemake.threads,
)
io.write_json(snakemake.output.status, status)
