"""Rule observables_cg: the CG trajectory's observables, computed exactly as the FG ones."""

from thermocg import cgmd, io, logs

logs.to_file(snakemake.log[0])
tables, summary = cgmd.run_observables(
    cgmd.read_status(snakemake.input.status), snakemake.input.trajectory, snakemake.input.topology,
    snakemake.params.cgmd, snakemake.params.observables, float(snakemake.wildcards.T),
)
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
