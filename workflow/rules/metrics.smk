# Stage 5: how well each fitted model reproduces forces and their temperature derivative (by its
# held-out score at T0, and the radial profile of dF/dbeta against the FG forces' finite difference).


rule force_metrics:
    input:
        unpack(score_run_inputs),
        models=expand("results/models/{model}/model.pt", model=FITTED),
        oracles=oracle_files(),  # one per temperature (params.temperatures)
        beads=expand("results/cg/T{T}/beads.npz", T=TEMPERATURES),
        energies_reference=f"results/cg/T{T0}/molecule_energies.npz",  # u_J of the held-out response score
    output:
        forces="results/metrics/forces.tsv",
        response="results/metrics/thermal_response.tsv",
        radial="results/metrics/radial_response.tsv",
    params:
        temperatures=config["temperatures"],
        reference_temperature=config["reference_temperature"],
        oracle=ORACLES[0] if ORACLES else None,
        split=settings("training", ["validation_fraction", "test_fraction", "frame_stride", "response_frame_stride"]),  # the test frames
    # not upstream, but long: started once its inputs exist, it does not end the run alone on one core
    # (common.smk, UPSTREAM_PRIORITY)
    priority: UPSTREAM_PRIORITY
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
        cg=sorted({f"results/observables/cg/{cg_run(m, t)}/T{t}/summary.json" for m, t in simulated_pairs()}),
        forces="results/metrics/forces.tsv",
    output:
        table="results/metrics/transferability.tsv",
        json="results/metrics/transferability.json",
        # the report shows HTML as a page, a TSV only as a download
        html=report(
            "results/metrics/transferability.html",
            caption="../report/transferability_table.rst",
            category="Structure",
        ),
    params:
        models=evaluated_models(),
        temperatures=config["temperatures"],
        shared_runs=shared_runs(),
    log:
        "logs/metrics/transferability.log",
    conda:
        ENV
    script:
        "../scripts/transferability.py"
