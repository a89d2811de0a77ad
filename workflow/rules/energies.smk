# Per-molecule shares u_J of the FG potential energy (inputs of em, trf1, trf2).


rule energies_per_molecule:
    input:
        frames="results/fg/T{T}/frames.npz",
        system="results/fg/T{T}/system.xml",
    output:
        energies="results/cg/T{T}/molecule_energies.npz",
    log:
        "logs/cg/T{T}/energies_per_molecule.log",
    benchmark:
        "results/benchmarks/cg/T{T}/energies_per_molecule.tsv"
    conda:
        ENV
    script:
        "../scripts/energies_per_molecule.py"
