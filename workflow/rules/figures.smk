# Stage 8: the figures that compare every model with the FG reference across temperatures.


rule figures:
    input:
        table="results/metrics/transferability.tsv",
        forces="results/metrics/forces.tsv",
        response="results/metrics/thermal_response.tsv",
        radial="results/metrics/radial_response.tsv",
        curves=expand("results/models/{model}/loss_curve.tsv", model=REFINED),
        fg=expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
        learning=expand("results/models/{model}/learning_curve.tsv", model=FITTED)
        + [f"results/models/{oracle}/T{t}/learning_curve.tsv" for oracle in ORACLES for t in oracle_temperatures(oracle)],
    output:
        transferability=figure("transferability", "Structure"),
        overlays=figure("rdf_adf_overlays", "Structure"),
        forces=figure("force_errors", "Thermal response"),
        response=figure("thermal_response", "Thermal response"),
        radial=figure("radial_response", "Thermal response"),
        diffusion=figure("diffusion", "Dynamics"),
        diffsim=figure("diffsim_curves", "DiffSim"),
        timings=figure("timings", "Performance"),
        learning=figure("learning_curves", "Training"),
    params:
        models=sorted(SIMULATED),  # as the other figures order them: the YAML's order changes nothing
        shared_runs=shared_runs(),
        temperatures=config["temperatures"],
        lambda_adf=config["diffsim"]["lambda_adf"],
    log:
        "logs/figures/figures.log",
    conda:
        ENV
    script:
        "../scripts/figures.py"
