# Stage 9: a parameter sweep of the thermal response fit (order, estimator, r_loc, T0 frames: the stride
# applies to the force-matched W0 trained with each point and to the thermal terms on it),
# one fit per row of config["sweep"]["table"], judged by the held-out score on the frames and
# targets of the pipeline's own thermal-response table (force_metrics).


rule sweep_fit:
    input:
        unpack(score_run_inputs),
        beads=f"results/cg/T{T0}/beads.npz",
        energies=f"results/cg/T{T0}/molecule_energies.npz",
        centring=sweep_centring()[1],
    output:
        model=f"results/sweep/{SWEEP.wildcard_pattern}/model.pt",
        response=f"results/sweep/{SWEEP.wildcard_pattern}/response.tsv",
        scores=f"results/sweep/{SWEEP.wildcard_pattern}/frame_scores.tsv",
        curve=f"results/sweep/{SWEEP.wildcard_pattern}/learning_curve.tsv",
        w0_model=f"results/sweep/{SWEEP.wildcard_pattern}/w0_model.pt",
        w0_curve=f"results/sweep/{SWEEP.wildcard_pattern}/w0_learning_curve.tsv",
    params:
        point=SWEEP.instance,
        network=settings("network"),
        training=settings("training"),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        centring_model=sweep_centring()[0],
        checkpoint=f"results/sweep/{SWEEP.wildcard_pattern}/training_state.pt",
    threads: config["training"]["threads"]
    log:
        f"logs/sweep/{SWEEP.wildcard_pattern}/sweep_fit.log",
    benchmark:
        f"results/benchmarks/sweep/{SWEEP.wildcard_pattern}/sweep_fit.tsv"
    conda:
        ENV
    script:
        "../scripts/sweep_fit.py"


rule sweep_summary:
    input:
        rows=expand("results/sweep/{point}/response.tsv", point=SWEEP.instance_patterns),
        scores=expand("results/sweep/{point}/frame_scores.tsv", point=SWEEP.instance_patterns),
    output:
        table="results/sweep/summary.tsv",
        figure=report("results/figures/sweep.png", caption="../report/sweep.rst", category="Parameter sweep"),
    log:
        "logs/sweep/sweep_summary.log",
    conda:
        ENV
    script:
        "../scripts/sweep_summary.py"
