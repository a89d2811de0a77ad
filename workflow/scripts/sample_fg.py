"""Rule sample_fg: OpenMM sampling of one temperature (see thermocg.fg)."""

from thermocg import fg, io, logs

logs.to_file(snakemake.log[0])
settings = fg.SamplingSettings.from_config(snakemake.config, snakemake.wildcards.T, threads=snakemake.threads)
stats = fg.sample(
    settings,
    frames_path=snakemake.output.frames,
    trajectory_path=snakemake.output.trajectory,
    topology_path=snakemake.output.topology,
    system_path=snakemake.output.system,
    state_path=snakemake.params.state,
)
io.write_json(snakemake.output.stats, stats)
