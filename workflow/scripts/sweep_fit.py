"""Rule sweep_fit: one combination of the parameter sweep (see thermocg.sweep)."""

import pandas as pd

from thermocg import io, logs, sweep

log = logs.to_file(snakemake.log[0])
params = snakemake.params
config = {"seed": params.seed, "network": params.network, "training": params.training,
          "reference_temperature": params.reference_temperature}
inputs = snakemake.input
score_runs = [(inputs.score_beads, inputs.score_energies)] if hasattr(inputs, "score_beads") else []
row, scores = sweep.fit_point(
    dict(params.point), config, inputs.beads, inputs.energies, inputs.centring, score_runs,
    snakemake.output.model, snakemake.output.curve, params.checkpoint, snakemake.threads,
)
row["centring_model"] = params.centring_model
io.write_table(snakemake.output.response, row)
io.write_table(snakemake.output.scores, pd.DataFrame({"score": scores}), comment=(
    "held-out score of each frame, (kJ/mol)^4/nm^2 (thermocg.metrics.response_score), in the order of the frames"))
log.info("\n%s", row.to_string())
