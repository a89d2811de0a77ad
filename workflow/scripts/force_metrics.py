"""Rule force_metrics: force RMSE per model and T, learned dF/dbeta against finite differences."""

from thermocg import io, logs, metrics, nn, units
from thermocg.config import temperature_label

log = logs.to_file(snakemake.log[0])
params = snakemake.params
models, oracle, oracle_name = {}, {}, None
for path in snakemake.input.models:
    model, metadata = nn.load_model(path)
    if metadata["kind"] == "fm_oracle":  # the config allows one such entry: the reference
        oracle[temperature_label(metadata["trained_at_K"][0])] = model
        oracle_name = metadata["name"]
    else:
        models[metadata["name"]] = (model, metadata)
beads = {temperature_label(t): path for t, path in zip(params.temperatures, snakemake.input.beads)}
reference = temperature_label(params.reference_temperature)
beta0 = float(units.beta(params.reference_temperature))
forces = metrics.force_table(models, oracle_name, oracle, beads, params.split, beta0)
io.write_table(snakemake.output.forces, forces, comment="force RMSE on held-out frames, kJ/(mol nm)")
response = metrics.response_table(models, oracle, beads[reference], params.temperatures, params.reference_temperature, params.split)
io.write_table(snakemake.output.response, response, comment="dF/dbeta at T0 vs oracle finite differences")
log.info("forces:\n%s\nthermal response:\n%s", forces.to_string(), response.to_string())
