# Stage 3: reference (FG) observables per temperature, and one figure across temperatures.


rule observables_fg:
    input:
        frames="results/fg/T{T}/frames.npz",
        beads="results/cg/T{T}/beads.npz",
    output:
        rdf_com="results/observables/fg/T{T}/rdf_com.tsv",
        rdf_oo="results/observables/fg/T{T}/rdf_oo.tsv",
        adf="results/observables/fg/T{T}/adf.tsv",
        msd="results/observables/fg/T{T}/msd.tsv",
        rdf_halves="results/observables/fg/T{T}/rdf_halves.tsv",
        adf_halves="results/observables/fg/T{T}/adf_halves.tsv",
        summary="results/observables/fg/T{T}/summary.json",
    params:
        observables=settings("observables"),
    log:
        "logs/observables/fg/T{T}/observables_fg.log",
    benchmark:
        "results/benchmarks/observables/fg/T{T}/observables_fg.tsv"
    conda:
        ENV
    script:
        "../scripts/observables_fg.py"


rule plot_fg_observables:
    input:
        summaries=expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
    output:
        png=report(
            "results/figures/fg_observables.png",
            caption="../report/fg_observables.rst",
            category="Structure",
        ),
        pdf="results/figures/fg_observables.pdf",
    log:
        "logs/figures/plot_fg_observables.log",
    conda:
        ENV
    script:
        "../scripts/plot_fg_observables.py"
