"""Rule observables_cg: the CG trajectory's observables, computed exactly as the FG ones."""

import json
from pathlib import Path

from thermocg import io, logs, observables

logs.to_file(snakemake.log[0])
tables, summary = observables.of_cg_run(
    json.loads(Path(snakemake.input.status).read_text()), snakemake.input.trajectory, snakemake.input.topology,
    snakemake.params.cgmd, snakemake.params.observables, float(snakemake.wildcards.T),
)
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
