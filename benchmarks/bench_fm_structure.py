"""Does force matching rank models by structure? Force error against eps at T0, after a default run.

Needs a finished default run. For each model given, at T0 (dbeta = 0) it writes the mean squared
force error against the mapped FG forces on the held-out T0 frames of the thermal-response score
(thermocg.metrics.score_frames: the T0 run's test frames and every frame of the score run, which no
fit saw), its difference to the first model's, paired on the same frames, with the standard error
over blocks of consecutive frames, and the model's eps_g and eps_a at T0 from the run's
transferability table. A model with better structure (lower eps) but a higher force error shows
that force matching on these frames does not prefer the force field with that structure.
`--model-file LABEL PATH` (repeatable) adds a model file from elsewhere, such as a force-matched
model of bench_fm_capacity.py trained on more or other T0 frames (its eps there; NaN here).

    python benchmarks/bench_fm_structure.py [--results results] [--config config/config.yaml]
        [--models fm_ref trf2_diffsim mtfm] [--model-file LABEL PATH ...]

Writes benchmarks/results/fm_structure.tsv and prints it.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from thermocg import config as configuration
from thermocg import io, metrics, nn, observables
from thermocg.config import temperature_label


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--models", nargs="+", default=["fm_ref", "trf2_diffsim", "mtfm"],
                        help="model names; the first is the one the others are compared with")
    parser.add_argument("--model-file", nargs=2, action="append", default=[], metavar=("LABEL", "PATH"),
                        help="another model file, e.g. from bench_fm_capacity.py")
    args = parser.parse_args()
    files = {name: Path(args.results) / f"models/{name}/model.pt" for name in args.models}
    files.update(dict(args.model_file))
    if len(files) < len(args.models) + len(args.model_file):
        parser.error("two models have the same name")
    config = configuration.load(args.config)
    results = Path(args.results)
    reference = temperature_label(config["reference_temperature"])
    score_runs = []
    if config["fg"].get("score_production"):
        score_runs = [(results / f"cg/T{reference}/score/beads.npz", None)]
    positions, forces, box, _ = metrics.score_frames(results / f"cg/T{reference}/beads.npz", config["training"],
                                                     score_runs=score_runs)
    transfer = io.read_table(results / "metrics/transferability.tsv")
    at_t0 = transfer[transfer["T_K"] == float(config["reference_temperature"])].set_index("model")
    per_frame = {}
    for name, path in files.items():
        model, _ = nn.load_model(path)
        error = metrics.model_forces(model, positions, box, 0.0) - forces
        per_frame[name] = np.mean(error**2, axis=(1, 2))  # per frame, so that blocks of frames give the SE
    first = args.models[0]
    rows = []
    for name in files:
        difference = per_frame[name] - per_frame[first]
        rows.append({
            "model": name,
            "force_mse": per_frame[name].mean(),
            "mse_minus_first": difference.mean(),
            "mse_minus_first_se": observables.block_standard_error(difference, metrics.SCORE_BLOCKS),
            "eps_g_T0": at_t0["eps_g"].get(name, np.nan), "eps_a_T0": at_t0["eps_a"].get(name, np.nan),
            "n_frames": len(difference),
        })
    table = pd.DataFrame(rows)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(out / "fm_structure.tsv", table, comment=(
        f"force matching against structure at T0 = {reference} K on held-out frames: force_mse (kJ/(mol nm))^2 per "
        f"component, mse_minus_first paired with {first} (SE over {metrics.SCORE_BLOCKS} blocks of frames); "
        "eps_g (1), eps_a (1/deg) from the run's transferability table"))
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))


if __name__ == "__main__":
    main()
