# Stage 2: centre-of-mass beads and mapped forces.


rule map_cg:
    input:
        frames="results/fg/{run}/frames.npz",
    output:
        beads="results/cg/{run}/beads.npz",
        trajectory="results/cg/{run}/beads.dcd",
        topology="results/cg/{run}/beads.pdb",
    # on the T0 chain to DiffSim (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/cg/{run}/map_cg.log",
    conda:
        ENV
    script:
        "../scripts/map_cg.py"
