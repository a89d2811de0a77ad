"""Rule plot_fg_observables: one figure of the FG observables across temperatures."""

from pathlib import Path

from thermocg import logs, plots

logs.to_file(snakemake.log[0])
plots.fg_observables([Path(p).parent for p in snakemake.input.summaries], snakemake.output.png, snakemake.output.pdf)
