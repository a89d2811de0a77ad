# Stage 6b: CG dynamics across temperatures (issue 13). D(T) with its error and the bead VACF, FG and
# CG, under each friction law of dynamics.laws for the models of dynamics.models (docs/dynamics.md).


rule sample_fg_fine:
    # a short FG run with frames every dynamics.fine_frame_interval: the VACF, and the force
    # autocorrelation of the force_acf law (at T0); replica 2: its own seed, not the main run's
    # stream (it would repeat the main run's start and first picoseconds)
    output:
        frames="results/fg/T{T}/fine/frames.npz",
        trajectory=temp("results/fg/T{T}/fine/trajectory.dcd"),
        topology=temp("results/fg/T{T}/fine/topology.pdb"),
        system=temp("results/fg/T{T}/fine/system.xml"),
        stats="results/fg/T{T}/fine/sampling_stats.json",
    params:
        water=settings("water"),
        fg=dict(settings("fg", leave_out=FG_RUN_LENGTHS), equilibration=config["dynamics"]["fine_equilibration"],
                production=config["dynamics"]["fine_production"],
                frame_interval=config["dynamics"]["fine_frame_interval"], replica=2),
        seed=config["seed"],
        state="results/fg/T{T}/fine/sampling_state.npz",
    threads: config["fg"]["threads"]
    log:
        "logs/fg/T{T}/sample_fg_fine.log",
    benchmark:
        "results/benchmarks/fg/T{T}/sample_fg_fine.tsv"
    conda:
        ENV
    script:
        "../scripts/sample_fg.py"


rule dynamics_fg:
    input:
        beads="results/cg/T{T}/beads.npz",
        fine="results/fg/T{T}/fine/frames.npz",
    output:
        summary="results/dynamics/fg/T{T}/summary.json",
        vacf="results/dynamics/fg/T{T}/vacf.tsv",
    params:
        observables=settings("observables", ["msd_fit_start", "msd_fit_end"]),
        dynamics=settings("dynamics", ["vacf_max_lag", "error_groups"]),
    log:
        "logs/dynamics/fg/T{T}/dynamics_fg.log",
    conda:
        ENV
    script:
        "../scripts/dynamics_fg.py"


rule friction_law:
    # gamma(T) of one law for one model (the chosen law's record is results/cgmd/{model}/friction.json)
    input:
        unpack(friction_inputs(None)),
    output:
        friction="results/dynamics/{model}/{law}/friction.json",
    params:
        friction_law=None,
        settings=friction_params(None),
    wildcard_constraints:
        model=_choice(DYNAMICS_MODELS),
        law=_choice(DYNAMICS_LAWS),
    log:
        "logs/dynamics/{model}/{law}/friction_law.log",
    conda:
        ENV
    script:
        "../scripts/fit_friction.py"


rule dynamics_cg:
    input:
        model=lambda wildcards: model_file(wildcards.model, wildcards.T),
        beads="results/cg/T{T}/beads.npz",
        friction="results/dynamics/{model}/{law}/friction.json",
    output:
        summary="results/dynamics/{model}/{law}/T{T}/summary.json",
        vacf="results/dynamics/{model}/{law}/T{T}/vacf.tsv",
    params:
        # frame_interval: a thermo row every 10 frames, as in cgmd
        cgmd=settings("cgmd", ["timestep", "equilibration", "frame_interval", "skin", "checkpoint_interval"]),
        observables=settings("observables", ["msd_fit_start", "msd_fit_end"]),
        dynamics=settings("dynamics", ["production", "vacf_max_lag", "error_groups"]),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
    wildcard_constraints:
        model=_choice(DYNAMICS_MODELS),
        law=_choice(SIMULATED_DYNAMICS_LAWS),
    threads: config["cgmd"]["threads"]
    log:
        "logs/dynamics/{model}/{law}/T{T}/dynamics_cg.log",
    benchmark:
        "results/benchmarks/dynamics/{model}/{law}/T{T}/dynamics_cg.tsv"
    conda:
        ENV
    script:
        "../scripts/dynamics_cg.py"


rule dynamics_of_cgmd:
    # the rows of cgmd.friction_law: the model's own CG MD run, which records every step (DYNAMICS_FROM_CGMD)
    input:
        unpack(own_cg_md_run),
    output:
        summary="results/dynamics/{model}/{law}/T{T}/summary.json",
        vacf="results/dynamics/{model}/{law}/T{T}/vacf.tsv",
    params:
        cgmd=settings("cgmd", ["timestep", "equilibration", "production"]),
        observables=settings("observables", ["msd_fit_start", "msd_fit_end"]),
        dynamics=settings("dynamics", ["vacf_max_lag", "error_groups"]),
    wildcard_constraints:
        model=_choice(DYNAMICS_MODELS),
        law=_choice([FRICTION_LAW] if DYNAMICS_FROM_CGMD else []),
    log:
        "logs/dynamics/{model}/{law}/T{T}/dynamics_of_cgmd.log",
    conda:
        ENV
    script:
        "../scripts/dynamics_of_cgmd.py"


rule dynamics_table:
    input:
        fg=expand("results/dynamics/fg/T{T}/summary.json", T=TEMPERATURES),
        cg=dynamics_files("summary.json"),  # at T0 one run serves the laws that share it
    output:
        table="results/metrics/dynamics.tsv",
    params:
        runs=dynamics_runs(),
    log:
        "logs/metrics/dynamics_table.log",
    conda:
        ENV
    script:
        "../scripts/dynamics_table.py"


rule plot_dynamics:
    input:
        table="results/metrics/dynamics.tsv",
        fg_vacf=expand("results/dynamics/fg/T{T}/vacf.tsv", T=TEMPERATURES),
        cg_vacf=dynamics_files("vacf.tsv"),
    output:
        png=figure("dynamics", "Dynamics"),
        pdf="results/figures/dynamics.pdf",
    params:
        runs=dynamics_runs(),
        temperatures=TEMPERATURES,
    log:
        "logs/figures/plot_dynamics.log",
    conda:
        ENV
    script:
        "../scripts/plot_dynamics.py"
