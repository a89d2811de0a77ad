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
    # on the T0 chain to DiffSim (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/fg/T{T}/sample_fg.log",
    benchmark:
        "results/benchmarks/fg/T{T}/sample_fg.tsv"
    conda:
        ENV
    script:
        "../scripts/sample_fg.py"


rule sample_fg_score:
    # a second, independent run at T0 (replica 1: its own seed) that no fit sees: more frames for
    # the held-out thermal-response score (fg.score_production)
    output:
        frames="results/fg/T{T}/score/frames.npz",
        trajectory=temp("results/fg/T{T}/score/trajectory.dcd"),
        topology=temp("results/fg/T{T}/score/topology.pdb"),
        system="results/fg/T{T}/score/system.xml",
        stats="results/fg/T{T}/score/sampling_stats.json",
    params:
        water=settings("water"),
        fg=dict(settings("fg", leave_out=FG_RUN_LENGTHS), production=config["fg"]["score_production"], replica=1),
        seed=config["seed"],
        state="results/fg/T{T}/score/sampling_state.npz",
    threads: config["fg"]["threads"]
    # not on the T0 chain, but upstream of map_cg, which is (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/fg/T{T}/sample_fg_score.log",
    benchmark:
        "results/benchmarks/fg/T{T}/sample_fg_score.tsv"
    conda:
        ENV
    script:
        "../scripts/sample_fg.py"
