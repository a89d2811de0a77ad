# Stage 2: centre-of-mass beads and mapped forces.


rule map_cg:
    input:
        frames="results/fg/{run}/frames.npz",
    output:
        beads="results/cg/{run}/beads.npz",
        trajectory="results/cg/{run}/beads.dcd",
        topology="results/cg/{run}/beads.pdb",
    log:
        "logs/cg/{run}/map_cg.log",
    conda:
        ENV
    script:
        "../scripts/map_cg.py"
