# Stage 5: how well each fitted model reproduces forces and their temperature derivative.


rule force_metrics:
    input:
        models=model_files(),
        beads=expand("results/cg/T{T}/beads.npz", T=TEMPERATURES),
    output:
        forces="results/metrics/forces.tsv",
        response="results/metrics/thermal_response.tsv",
    params:
        temperatures=config["temperatures"],
        reference_temperature=config["reference_temperature"],
        split=settings("training", ["validation_fraction", "test_fraction", "frame_stride"]),  # the test frames
    log:
        "logs/metrics/force_metrics.log",
    benchmark:
        "results/benchmarks/metrics/force_metrics.tsv"
    conda:
        ENV
    script:
        "../scripts/force_metrics.py"


rule transferability:
    input:
        fg=expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
        cg=[f"results/observables/cg/{m}/T{t}/summary.json" for m, t in simulated_pairs()],
        forces="results/metrics/forces.tsv",
    output:
        table=report(
            "results/metrics/transferability.tsv",
            caption="../report/transferability_table.rst",
            category="Transferability",
        ),
        json="results/metrics/transferability.json",
    params:
        models=evaluated_models(),
        temperatures=config["temperatures"],
    log:
        "logs/metrics/transferability.log",
    conda:
        ENV
    script:
        "../scripts/transferability.py"
