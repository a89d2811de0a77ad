"""Rule observables_fg: reference observables of one temperature (see thermocg.observables)."""

from thermocg import io, logs, observables, transfer

log = logs.to_file(snakemake.log[0])
frames = io.load_frames(snakemake.input.frames)
oxygen = frames["positions"][:, frames["atom_names"] == "O"]
beads = io.load_frames(snakemake.input.beads)
tables, summary = observables.compute_all(beads, snakemake.params.observables, oxygen)
summary["noise_floor"] = transfer.halves_spread(tables["rdf_halves"], tables["adf_halves"])
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
log.info("D = %.4g +- %.2g nm^2/ps, <U>/N = %.3f kJ/mol, noise floor eps_g %.3g, eps_a %.3g",
         summary["diffusion"]["D_nm2_per_ps"], summary["diffusion"]["D_error_nm2_per_ps"], summary["potential_energy"]["mean_per_molecule_kJ_per_mol"],
         summary["noise_floor"]["eps_g"], summary["noise_floor"]["eps_a"])
