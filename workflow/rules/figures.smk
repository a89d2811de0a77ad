# Stage 8: the figures that compare every model with the FG reference across temperatures.


rule figures:
    input:
        table="results/metrics/transferability.tsv",
        forces="results/metrics/forces.tsv",
        response="results/metrics/thermal_response.tsv",
        curves=expand("results/models/{model}/loss_curve.tsv", model=REFINED),
        fg=expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
    output:
        transferability=figure("transferability", "transferability"),
        overlays=figure("rdf_adf_overlays", "rdf_adf_overlays"),
        forces=figure("force_errors", "force_errors"),
        response=figure("thermal_response", "thermal_response"),
        diffusion=figure("diffusion", "diffusion"),
        diffsim=figure("diffsim_curves", "diffsim_curves"),
        timings=figure("timings", "timings"),
    params:
        models=sorted(SIMULATED),  # as the other figures order them: the YAML's order changes nothing
        temperatures=config["temperatures"],
        lambda_adf=config["diffsim"]["lambda_adf"],
    log:
        "logs/figures/figures.log",
    conda:
        ENV
    script:
        "../scripts/figures.py"
