"""Rule force_metrics: force RMSE per model and T, learned dF/dbeta against finite differences."""

from thermocg import io, logs, metrics, nn, units
from thermocg.config import temperature_label

log = logs.to_file(snakemake.log[0])
config = snakemake.config
models, oracles = {}, {}
for path in snakemake.input.models:
    model, metadata = nn.load_model(path)
    if metadata["kind"] == "fm_oracle":
        oracles.setdefault(metadata["name"], {})[temperature_label(metadata["trained_at_K"][0])] = model
    else:
        models[metadata["name"]] = (model, metadata)
oracle = next(iter(oracles.values()), {})  # the first fm_oracle entry is the reference
beads = {temperature_label(t): path for t, path in zip(config["temperatures"], snakemake.input.beads)}
reference = temperature_label(config["reference_temperature"])
beta0 = float(units.beta(config["reference_temperature"]))
forces = metrics.force_table(models, oracle, beads, config["training"], beta0)
io.write_table(snakemake.output.forces, forces, comment="force RMSE on held-out frames, kJ/(mol nm)")
response = metrics.response_table(models, oracle, beads[reference], config["temperatures"], config["reference_temperature"], config["training"])
io.write_table(snakemake.output.response, response, comment="dF/dbeta at T0 vs oracle finite differences")
log.info("forces:\n%s\nthermal response:\n%s", forces.to_string(), response.to_string())
