# Stage 9: a parameter sweep of the thermal response fit (order, estimator, r_loc, T0 frames: the stride
# applies to the force-matched W0 trained with each point and to the thermal terms on it),
# one fit per row of config["sweep"]["table"], judged against the fm_oracle finite differences.


rule sweep_fit:
    input:
        beads=f"results/cg/T{T0}/beads.npz",
        energies=f"results/cg/T{T0}/molecule_energies.npz",
        oracles=sweep_oracle_files(),
    output:
        model=f"results/sweep/{SWEEP.wildcard_pattern}/model.pt",
        response=f"results/sweep/{SWEEP.wildcard_pattern}/response.tsv",
        curve=f"results/sweep/{SWEEP.wildcard_pattern}/learning_curve.tsv",
        w0_model=f"results/sweep/{SWEEP.wildcard_pattern}/w0_model.pt",
        w0_curve=f"results/sweep/{SWEEP.wildcard_pattern}/w0_learning_curve.tsv",
    params:
        point=SWEEP.instance,
        network=settings("network"),
        training=settings("training"),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        neighbours=NEIGHBOURS,
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
        expand("results/sweep/{point}/response.tsv", point=SWEEP.instance_patterns),
    output:
        table="results/sweep/summary.tsv",
        figure=report("results/figures/sweep.png", caption="../report/sweep.rst", category="Parameter sweep"),
    log:
        "logs/sweep/sweep_summary.log",
    conda:
        ENV
    script:
        "../scripts/sweep_summary.py"
