"""Rule transferability: eps_g, eps_a, D ratio and force errors per (model, temperature)."""

from thermocg import logs, train, transfer

log = logs.to_file(snakemake.log[0])
config = snakemake.config
models = {}
for name, spec in config["models"].items():
    if spec["kind"] == "fm_oracle":
        models[name] = {"trained_at": config["temperatures"]}  # one oracle per temperature
    else:
        models[name] = {"trained_at": train.training_temperatures(spec, config)}
for name in config["diffsim"]["models"]:
    models[f"{name}_diffsim"] = {"trained_at": models[name]["trained_at"] + config["diffsim"]["temperatures"]}
table = transfer.transferability_table(models, config["temperatures"], "results/observables/fg", "results/observables/cg",
                                       snakemake.input.forces)
transfer.write_transferability(table, snakemake.output.table, snakemake.output.json)
log.info("\n%s", table.to_string())
