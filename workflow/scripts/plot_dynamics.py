"""Rule plot_dynamics: D_CG / D_FG against T per friction law, and the bead VACFs (thermocg.plots)."""

from thermocg import io, logs, plots

log = logs.to_file(snakemake.log[0])
params = snakemake.params
fg_vacf = {t: io.read_table(path) for t, path in zip(params.temperatures, snakemake.input.fg_vacf)}
# one VACF per (model, law, T) row of the table; a run shared at T0 serves each law it stands for
cg_vacf = {tuple(run): io.read_table(path) for run, path in zip(params.runs, snakemake.input.cg_vacf)}
plots.plot_dynamics(io.read_table(snakemake.input.table), fg_vacf, cg_vacf, snakemake.output.png, snakemake.output.pdf)
