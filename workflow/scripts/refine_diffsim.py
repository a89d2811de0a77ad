"""Rule refine_diffsim: refine a fitted model by differentiable simulation (see thermocg.diffsim)."""

from thermocg import diffsim, logs

logs.to_file(snakemake.log[0])
config = snakemake.config
diffsim.refine_model_file(
    snakemake.input.model, list(snakemake.input.beads), config["diffsim"]["temperatures"], config["reference_temperature"],
    config["diffsim"], snakemake.output.model, snakemake.output.curve,
    seed=config["seed"], threads=snakemake.threads,
)
