"""Rules fit and fit_oracle: train one CG model (see thermocg.train)."""

from thermocg import kinds, logs, train
from thermocg.config import temperature_label

logs.to_file(snakemake.log[0])
params, name = snakemake.params, snakemake.wildcards.model
config = {"seed": params.seed, "network": params.network, "training": params.training,
          "reference_temperature": params.reference_temperature}
temperature = snakemake.wildcards.get("T")
labels = [temperature_label(t) for t in kinds.training_temperatures(params.spec, config, temperature)]
beads = [snakemake.input.beads] if isinstance(snakemake.input.beads, str) else list(snakemake.input.beads)
energies = list(snakemake.input.get("energies", []))
train.train_model(
    name, params.spec, config,
    beads=dict(zip(labels, beads)), energies=dict(zip(labels, energies)),
    model_path=snakemake.output.model, curve_path=snakemake.output.curve,
    checkpoint_path=params.checkpoint, threads=snakemake.threads, temperature=temperature,
    w0_model=snakemake.input.get("w0_model"), response_systems=snakemake.input.get("response_systems"),
)
