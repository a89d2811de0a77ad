"""Rule response_systems: the thermal terms' normal equations of one group of trf1/trf2 entries
(see thermocg.train.build_response_systems)."""

from thermocg import logs, train
from thermocg.config import temperature_label

logs.to_file(snakemake.log[0])
params = snakemake.params
config = {"seed": params.seed, "network": params.network, "training": params.training,
          "reference_temperature": params.reference_temperature}
label = temperature_label(params.reference_temperature)
train.build_response_systems(
    snakemake.wildcards.model, params.spec, config, beads={label: snakemake.input.beads[0]},
    energies={label: snakemake.input.energies[0]}, w0_model=snakemake.input.w0_model,
    path=snakemake.output.systems, threads=snakemake.threads,
)
