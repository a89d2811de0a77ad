"""Rule sample_fg: OpenMM sampling of one temperature (see thermocg.fg)."""

from thermocg import fg, io, logs

logs.to_file(snakemake.log[0])
params = snakemake.params
config = {"water": params.water, "fg": params.fg, "seed": params.seed}
settings = fg.SamplingSettings.from_config(config, snakemake.wildcards.T, threads=snakemake.threads)
stats = fg.sample(
    settings,
    frames_path=snakemake.output.frames,
    trajectory_path=snakemake.output.trajectory,
    topology_path=snakemake.output.topology,
    system_path=snakemake.output.system,
    state_path=params.state,
)
io.write_json(snakemake.output.stats, stats)
