"""Rule energies_per_molecule: u_J for every frame (see thermocg.energies)."""

from thermocg import energies, io, logs

log = logs.to_file(snakemake.log[0])
shares, worst = energies.frames_file_energies(snakemake.input.frames, snakemake.input.system)
io.save_frames(snakemake.output.energies, bead_energies=shares)
log.info("%d frames; largest |sum_J u_J - U| / |U| = %.2e", len(shares), worst)
