"""Rule force_metrics: force RMSE per model and T; the learned dF/dbeta's held-out score against
local y1 targets at T0 and its radial (pair-projected) profile against the FG forces."""

import pandas as pd

from thermocg import io, logs, metrics, nn, units
from thermocg.config import neighbouring_temperatures, temperature_label

log = logs.to_file(snakemake.log[0])
params = snakemake.params
models = {}
for path in snakemake.input.models:
    model, metadata = nn.load_model(path)
    models[metadata["name"]] = (model, metadata)
# the fm_oracle entry (the config allows one: the reference) at each temperature; at T0 that is fm_ref's file
oracle_name = params.oracle
oracle = {temperature_label(t): nn.load_model(path)[0] for t, path in zip(params.temperatures, snakemake.input.oracles)}
beads = {temperature_label(t): path for t, path in zip(params.temperatures, snakemake.input.beads)}
reference = temperature_label(params.reference_temperature)
beta0 = float(units.beta(params.reference_temperature))
forces = metrics.force_table(models, oracle_name, oracle, beads, params.split, beta0)
io.write_table(snakemake.output.forces, forces, comment="force RMSE on held-out frames, kJ/(mol nm)")
score_runs = [(snakemake.input.score_beads, snakemake.input.score_energies)] if hasattr(snakemake.input, "score_beads") else []
response = metrics.response_table(models, oracle, beads[reference], params.reference_temperature, params.split,
                                  snakemake.input.energies_reference, oracle_name, score_runs=score_runs)
pair = neighbouring_temperatures(params.temperatures, params.reference_temperature)
radial = pd.DataFrame(columns=["model", "kind", "trained_at", "r_nm", "response", "error", "error_se"])
if pair is not None:
    radial = metrics.radial_response(models, *(beads[temperature_label(t)] for t in pair), *pair, beta0)
    response = response.merge(metrics.radial_summary(radial), on="model", how="left")
between = f"{pair[0]:g} and {pair[1]:g} K" if pair is not None else "the sampled temperatures next to T0 (none here)"
io.write_table(snakemake.output.radial, radial, comment=(
    f"radial thermal response: d/dbeta of the pair-projected force (kJ/mol)^2/nm between {between},\n"
    "FG forces (model FG) and each model's F(R; beta) on the same FG frames; error = model - FG, error_se its standard error"))
io.write_table(snakemake.output.response, response, comment=(
    "dF/dbeta at T0 on held-out T0 frames, (kJ/mol)^2/nm\n"
    "score, score_se: mean |y1|^2 - mean |y1 - dF/dbeta|^2 per bead, (kJ/mol)^4/nm^2, higher is better, 0 = predicting zero;\n"
    "y1 local within score_r_loc_nm, centred with centring_model's mean force and the mean u_J of these frames;\n"
    "score_se: standard error over blocks of consecutive frames\n"
    "score_below_best, score_below_best_se: the best model's score minus this one's, paired on the same frames\n"
    "radial_rmse, radial_rmse_noise: RMS over r of the radial profile's error and of its standard error (radial_response.tsv)"))
log.info("forces:\n%s\nthermal response:\n%s", forces.to_string(), response.to_string())
