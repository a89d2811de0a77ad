# Stage 3: reference (FG) observables per temperature, and one figure across temperatures.
import thermocg.observables


# The diffusion has a rule of its own: the friction fit reads it, and a change of a structural setting
# (RDF, ADF) must not refit the friction and rerun every CG MD run after it.
rule diffusion_fg:
    input:
        beads="results/cg/T{T}/beads.npz",
    output:
        msd="results/observables/fg/T{T}/msd.tsv",
        diffusion="results/observables/fg/T{T}/diffusion.json",
    params:
        observables=settings("observables", keys=thermocg.observables.DIFFUSION_SETTINGS),
    log:
        "logs/observables/fg/T{T}/diffusion_fg.log",
    benchmark:
        "results/benchmarks/observables/fg/T{T}/diffusion_fg.tsv"
    conda:
        ENV
    script:
        "../scripts/diffusion_fg.py"


rule observables_fg:
    input:
        frames="results/fg/T{T}/frames.npz",
        beads="results/cg/T{T}/beads.npz",
        diffusion="results/observables/fg/T{T}/diffusion.json",
    output:
        rdf_com="results/observables/fg/T{T}/rdf_com.tsv",
        rdf_oo="results/observables/fg/T{T}/rdf_oo.tsv",
        adf="results/observables/fg/T{T}/adf.tsv",
        rdf_halves="results/observables/fg/T{T}/rdf_halves.tsv",
        adf_halves="results/observables/fg/T{T}/adf_halves.tsv",
        summary="results/observables/fg/T{T}/summary.json",  # with the diffusion, as a CG run's summary
    params:
        observables=settings("observables", keys=thermocg.observables.STRUCTURE_SETTINGS),
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
