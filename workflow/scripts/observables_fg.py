"""Rule observables_fg: reference structure of one temperature, and its summary with the diffusion
of rule diffusion_fg (see thermocg.observables)."""

import json

from thermocg import io, logs, observables, transfer

log = logs.to_file(snakemake.log[0])
frames = io.load_frames(snakemake.input.frames)
oxygen = frames["positions"][:, frames["atom_names"] == "O"]
beads = io.load_frames(snakemake.input.beads)
tables, summary = observables.structure(beads, snakemake.params.observables, oxygen)
summary["diffusion"] = json.loads(open(snakemake.input.diffusion).read())["diffusion"]
summary["noise_floor"] = transfer.halves_spread(tables["rdf_halves"], tables["adf_halves"])
for name, table in tables.items():
    io.write_table(snakemake.output[name], table)
io.write_json(snakemake.output.summary, summary)
log.info("<U>/N = %.3f kJ/mol, noise floor eps_g %.3g, eps_a %.3g", summary["potential_energy"]["mean_per_molecule_kJ_per_mol"],
         summary["noise_floor"]["eps_g"], summary["noise_floor"]["eps_a"])
