# Stage 2: centre-of-mass beads and mapped forces.


rule map_cg:
    input:
        frames="results/fg/T{T}/frames.npz",
    output:
        beads="results/cg/T{T}/beads.npz",
        trajectory="results/cg/T{T}/beads.dcd",
        topology="results/cg/T{T}/beads.pdb",
    log:
        "logs/cg/T{T}/map_cg.log",
    conda:
        ENV
    script:
        "../scripts/map_cg.py"
