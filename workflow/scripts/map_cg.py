"""Rule map_cg: centre-of-mass beads and mapped forces (see thermocg.mapping)."""

from thermocg import io, logs, mapping

log = logs.to_file(snakemake.log[0])
beads = mapping.map_frames(io.load_frames(snakemake.input.frames))
io.save_frames(snakemake.output.beads, **beads)
io.write_cg_trajectory(snakemake.output.trajectory, snakemake.output.topology, beads["positions"], beads["box"], beads["time"])
log.info("mapped %d frames to %d beads", *beads["positions"].shape[:2])
