"""Rule transferability: eps_g, eps_a, D ratio and force errors per (model, temperature)."""

from thermocg import logs, reporting, transfer

log = logs.to_file(snakemake.log[0])
table = transfer.transferability_table(snakemake.params.models, snakemake.params.temperatures, "results/observables/fg",
                                       "results/observables/cg", snakemake.input.forces, snakemake.params.shared_runs)
transfer.write_transferability(table, snakemake.output.table, snakemake.output.json)
reporting.html_table(snakemake.output.table, snakemake.output.html, "Transferability of the CG models across temperature")
log.info("\n%s", table.to_string())
