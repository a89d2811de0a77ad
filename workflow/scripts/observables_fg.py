"""Rule observables_fg: reference observables of one temperature (see thermocg.observables)."""

from thermocg import io, logs, observables

log = logs.to_file(snakemake.log[0])
frames = io.load_frames(snakemake.input.frames)
oxygen = frames["positions"][:, frames["atom_names"] == "O"]
tables, summary = observables.compute_all(io.load_frames(snakemake.input.beads), snakemake.params.observables, oxygen)
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
log.info("D = %.4g nm^2/ps, <U>/N = %.3f kJ/mol", summary["diffusion"]["D_nm2_per_ps"],
         summary["potential_energy"]["mean_per_molecule_kJ_per_mol"])
