# Stage 4: CG force fields, one job per model entry of config["models"] (fm_oracle: one per T).


rule response_systems:
    # the normal equations of the closed-form thermal terms (thermocg.response): nearly all of a
    # trf1/trf2 fit's cost, built once for the entries that differ only in their kind
    input:
        unpack(response_systems_inputs),
    output:
        systems="results/response/{model}/systems.npz",
    params:
        spec=lambda wildcards: response_group_spec(wildcards.model),
        network=settings("network"),
        training=settings("training"),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
    wildcard_constraints:
        model=_choice(list(RESPONSE_GROUPS)),
    threads: config["training"]["threads"]
    # on the T0 chain to DiffSim (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/response/{model}/response_systems.log",
    benchmark:
        "results/benchmarks/response/{model}/response_systems.tsv"
    conda:
        ENV
    script:
        "../scripts/response_systems.py"


rule fit:
    input:
        unpack(fit_inputs),
    output:
        model="results/models/{model}/model.pt",
        curve="results/models/{model}/learning_curve.tsv",
    params:
        spec=lambda wildcards: model_spec(wildcards.model),
        network=settings("network"),
        training=settings("training"),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        checkpoint="results/models/{model}/training_state.pt",
    wildcard_constraints:
        model=_choice(FITTED),
    threads: config["training"]["threads"]
    # on the T0 chain to DiffSim (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/models/{model}/fit.log",
    benchmark:
        "results/benchmarks/models/{model}/fit.tsv"
    conda:
        ENV
    script:
        "../scripts/fit.py"


rule fit_oracle:
    input:
        beads="results/cg/T{T}/beads.npz",
    output:
        model="results/models/{model}/T{T}/model.pt",
        curve="results/models/{model}/T{T}/learning_curve.tsv",
    params:
        spec=lambda wildcards: model_spec(wildcards.model),
        network=settings("network"),
        training=settings("training"),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        checkpoint="results/models/{model}/T{T}/training_state.pt",
    wildcard_constraints:
        model=_choice(ORACLES),
    threads: config["training"]["threads"]
    # its CG MD and force_metrics wait for it (common.smk, UPSTREAM_PRIORITY)
    priority: UPSTREAM_PRIORITY
    log:
        "logs/models/{model}/T{T}/fit.log",
    benchmark:
        "results/benchmarks/models/{model}/T{T}/fit.tsv"
    conda:
        ENV
    script:
        "../scripts/fit.py"
