# Per-molecule shares u_J of the FG potential energy (inputs of em, trf1, trf2).


rule energies_per_molecule:
    input:
        frames="results/fg/{run}/frames.npz",
        system="results/fg/{run}/system.xml",
    output:
        energies="results/cg/{run}/molecule_energies.npz",
    # on the T0 chain to DiffSim (common.smk, CHAIN_PRIORITY)
    priority: CHAIN_PRIORITY
    log:
        "logs/cg/{run}/energies_per_molecule.log",
    benchmark:
        "results/benchmarks/cg/{run}/energies_per_molecule.tsv"
    conda:
        ENV
    script:
        "../scripts/energies_per_molecule.py"
