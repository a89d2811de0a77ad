# Stage 7: DiffSim refinement of a fitted model against the FG RDF and ADF at several temperatures.


rule refine_diffsim:
    input:
        model="results/models/{model}/model.pt",
        beads=expand("results/cg/T{T}/beads.npz", T=[thermocg.config.temperature_label(t) for t in config["diffsim"]["temperatures"]]),
    output:
        model="results/models/{model}_diffsim/model.pt",
        curve="results/models/{model}_diffsim/loss_curve.tsv",
    params:
        # diffsim.models says which models are refined, not how: no param
        diffsim=settings("diffsim", leave_out=["models", "threads"]),
        seed=config["seed"],
        reference_temperature=config["reference_temperature"],
        checkpoint="results/models/{model}_diffsim/refine_state.pt",
    wildcard_constraints:
        model=_choice(config["diffsim"]["models"]),
    threads: config["diffsim"]["threads"]
    # the longest job, and CG MD of the refined model waits for it: started as soon as its inputs
    # exist, it does not end the run alone on one core (the default run: 2 minutes sooner)
    priority: CHAIN_PRIORITY
    log:
        "logs/models/{model}_diffsim/refine_diffsim.log",
    benchmark:
        "results/benchmarks/models/{model}_diffsim/refine_diffsim.tsv"
    conda:
        ENV
    script:
        "../scripts/refine_diffsim.py"
