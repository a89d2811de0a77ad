# Stage 4: CG force fields, one job per model entry of config["models"] (fm_oracle: one per T).
def fit_inputs(wildcards):
    spec = MODELS[wildcards.model]
    labels = [thermocg.config.temperature_label(t) for t in thermocg.train.training_temperatures(spec, config)]
    inputs = {"beads": [f"results/cg/T{label}/beads.npz" for label in labels]}
    if spec["kind"] in thermocg.train.NEEDS_ENERGIES:
        inputs["energies"] = [f"results/cg/T{label}/molecule_energies.npz" for label in labels]
    return inputs


def model_files():
    """Every fitted model file of the config."""
    files = expand("results/models/{model}/model.pt", model=FITTED)
    files += expand("results/models/{model}/T{T}/model.pt", model=ORACLES, T=TEMPERATURES)
    return files


rule fit:
    input:
        unpack(fit_inputs),
    output:
        model="results/models/{model}/model.pt",
        curve="results/models/{model}/learning_curve.tsv",
    params:
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
