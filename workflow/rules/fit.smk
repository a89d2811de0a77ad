# Stage 4: CG force fields, one job per model entry of config["models"] (fm_oracle: one per T).


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
    log:
        "logs/models/{model}/T{T}/fit.log",
    benchmark:
        "results/benchmarks/models/{model}/T{T}/fit.tsv"
    conda:
        ENV
    script:
        "../scripts/fit.py"
