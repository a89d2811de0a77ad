"""Rule refine_diffsim: refine a fitted model by differentiable simulation (see thermocg.diffsim)."""

from thermocg import diffsim, logs

logs.to_file(snakemake.log[0])
params = snakemake.params
diffsim.refine_model_file(
    snakemake.input.model, list(snakemake.input.beads), params.diffsim["temperatures"], params.reference_temperature,
    params.diffsim, snakemake.output.model, snakemake.output.curve,
    seed=params.seed, threads=snakemake.threads, checkpoint=params.checkpoint,
)
