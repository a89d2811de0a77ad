"""Rule plot_dynamics: D_CG / D_FG against T per friction law, and the bead VACFs (thermocg.plots)."""

from thermocg import io, logs, plots

log = logs.to_file(snakemake.log[0])
params = snakemake.params
fg_vacf = {t: io.read_table(path) for t, path in zip(params.temperatures, snakemake.input.fg_vacf)}
cg_vacf, paths = {}, iter(snakemake.input.cg_vacf)
for model in params.models:
    for law in params.laws:
        for t in params.temperatures:
            cg_vacf[(model, law, t)] = io.read_table(next(paths))
plots.plot_dynamics(io.read_table(snakemake.input.table), fg_vacf, cg_vacf, snakemake.output.png, snakemake.output.pdf)
