# Stage 6: CG MD of every model at every temperature (trained or not), and the CG observables.
# The friction of each model follows cgmd.friction_law (thermocg.friction, docs/dynamics.md).


rule friction_lines:
    input:
        models=lambda wildcards: [model_file(wildcards.model, t) for t in line_temperatures(wildcards.model)],
        beads=lambda wildcards: [f"results/cg/T{t}/beads.npz" for t in line_temperatures(wildcards.model)],
    output:
        lines="results/cgmd/{model}/friction_lines.json",
    params:
        temperatures=lambda wildcards: line_temperatures(wildcards.model),
        trials=friction_trials(),
    wildcard_constraints:
        model=_choice(SIMULATED),
    threads: config["cgmd"]["threads"]
    # its model's CG MD and dynamics runs wait for it (common.smk, UPSTREAM_PRIORITY)
    priority: UPSTREAM_PRIORITY
    log:
        "logs/cgmd/{model}/friction_lines.log",
    benchmark:
        "results/benchmarks/cgmd/{model}/friction_lines.tsv"
    conda:
        ENV
    script:
        "../scripts/friction_lines.py"


rule fit_friction:
    input:
        unpack(friction_inputs(FRICTION_LAW)),
    output:
        friction="results/cgmd/{model}/friction.json",
    params:
        friction_law=FRICTION_LAW,
        settings=friction_params(FRICTION_LAW),
    wildcard_constraints:
        model=_choice(SIMULATED),
    log:
        "logs/cgmd/{model}/fit_friction.log",
    benchmark:
        "results/benchmarks/cgmd/{model}/fit_friction.tsv"
    conda:
        ENV
    script:
        "../scripts/fit_friction.py"


rule cgmd:
    input:
        model=lambda wildcards: model_file(wildcards.model, wildcards.T),
        beads="results/cg/T{T}/beads.npz",
        friction="results/cgmd/{model}/friction.json",
    output:
        trajectory="results/cgmd/{model}/T{T}/trajectory.dcd",
        topology="results/cgmd/{model}/T{T}/topology.pdb",
        thermo="results/cgmd/{model}/T{T}/thermo.tsv",
        # stable, or the step and reason of a blow-up (a result: the model fails to transfer)
        status="results/cgmd/{model}/T{T}/status.json",
    params:
        # what one run's numbers depend on (its friction, gamma(T) of cgmd.friction_law, comes from the friction file)
        # checkpoint_interval too: the neighbour list is rebuilt at every checkpoint (thermocg.md)
        cgmd=settings("cgmd", ["timestep", "equilibration", "production", "frame_interval", "skin", "checkpoint_interval"]),
        # one seed for every model and temperature, on purpose: at a temperature all models start from
        # the same mapped FG frame with the same random stream, so their runs differ by the model only
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        frames_every_step=lambda wildcards: records_every_step(wildcards.model, wildcards.T),
        # Not an output: it must survive a killed job so that the rerun resumes from it.
        checkpoint="results/cgmd/{model}/T{T}/checkpoint.npz",
    wildcard_constraints:
        model=_choice(SIMULATED),
    threads: config["cgmd"]["threads"]
    log:
        "logs/cgmd/{model}/T{T}/cgmd.log",
    benchmark:
        "results/benchmarks/cgmd/{model}/T{T}/cgmd.tsv"
    conda:
        ENV
    script:
        "../scripts/cgmd.py"


rule observables_cg:
    input:
        trajectory="results/cgmd/{model}/T{T}/trajectory.dcd",
        topology="results/cgmd/{model}/T{T}/topology.pdb",
        status="results/cgmd/{model}/T{T}/status.json",
    output:
        rdf_com="results/observables/cg/{model}/T{T}/rdf_com.tsv",
        adf="results/observables/cg/{model}/T{T}/adf.tsv",
        msd="results/observables/cg/{model}/T{T}/msd.tsv",
        rdf_halves="results/observables/cg/{model}/T{T}/rdf_halves.tsv",
        adf_halves="results/observables/cg/{model}/T{T}/adf_halves.tsv",
        summary="results/observables/cg/{model}/T{T}/summary.json",
    params:
        observables=settings("observables"),
        cgmd=settings("cgmd", ["equilibration", "frame_interval"]),  # which frames are production
    wildcard_constraints:
        model=_choice(SIMULATED),
    log:
        "logs/observables/cg/{model}/T{T}/observables_cg.log",
    conda:
        ENV
    script:
        "../scripts/observables_cg.py"
