"""Rule figures: every comparison figure, PNG for the report and PDF beside it (see thermocg.plots)."""

from pathlib import Path

from thermocg import logs, plots

logs.to_file(snakemake.log[0])
params, out, inp = snakemake.params, snakemake.output, snakemake.input


def pdf(png):
    return str(Path(png).with_suffix(".pdf"))


plots.transferability(inp.table, out.transferability, pdf(out.transferability))
plots.rdf_adf_overlays("results/observables/fg", "results/observables/cg", params.models, params.temperatures,
                       out.overlays, pdf(out.overlays), params.shared_runs)
plots.force_errors(inp.forces, out.forces, pdf(out.forces))
plots.thermal_response(inp.response, out.response, pdf(out.response))
plots.radial_response(inp.radial, out.radial, pdf(out.radial))
plots.diffusion(inp.table, out.diffusion, pdf(out.diffusion))
curves = {Path(path).parent.name: path for path in inp.curves}
plots.diffsim_curves(curves, inp.table, out.diffsim, pdf(out.diffsim), lambda_adf=params.lambda_adf)
plots.timings(plots.collect_timings("results"), out.timings, pdf(out.timings))
# results/models/<model>/learning_curve.tsv, or <model>/T<T>/learning_curve.tsv for fm_oracle kinds
learning = {}
for path in map(Path, inp.learning):
    model, *per_temperature = path.relative_to("results/models").parent.parts
    learning[(model, per_temperature[0].removeprefix("T") if per_temperature else None)] = path
plots.learning_curves(learning, out.learning, pdf(out.learning))
