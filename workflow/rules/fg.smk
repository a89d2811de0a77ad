# Stage 1: atomistic water sampled with OpenMM, one job per temperature.


rule sample_fg:
    output:
        frames="results/fg/T{T}/frames.npz",
        trajectory="results/fg/T{T}/trajectory.dcd",
        topology="results/fg/T{T}/topology.pdb",
        system="results/fg/T{T}/system.xml",
        stats="results/fg/T{T}/sampling_stats.json",
    params:
        water=settings("water"),
        # fg.threads included: OpenMM's CPU platform gives bit-identical frames with 1 thread only,
        # so a change of threads changes the frames. So does checkpoint_interval: every interval
        # restarts from the saved state, as a resumed run does (thermocg.fg).
        fg=fg_settings,
        seed=config["seed"],
        # Not an output: it must survive a failed or killed job so the rerun resumes from it.
        state="results/fg/T{T}/sampling_state.npz",
    threads: config["fg"]["threads"]
    log:
        "logs/fg/T{T}/sample_fg.log",
    benchmark:
        "results/benchmarks/fg/T{T}/sample_fg.tsv"
    conda:
        ENV
    script:
        "../scripts/sample_fg.py"
