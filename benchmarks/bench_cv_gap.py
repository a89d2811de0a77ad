"""Cross-validation with a gap: do the ridges of the closed-form thermal terms change when the frames beside each scored stretch are left out of its fit?

T0 frames 0.1 ps apart are correlated. thermocg.response.solve_ridge scores each stretch of
consecutive frames with a fit on all the others, so the frames at a stretch's ends have correlated
neighbours in that fit, which could favour a weaker ridge. For one trf1 or trf2 entry of a finished
default run, this builds the normal equations of its heads (e, W1 and, for trf2, the second-order
term) from the run's T0 frames on the run's fm_ref W0, as the pipeline does, and chooses each head's
ridge again with ``gap_frames`` frames on each side of the scored stretch left out of its fit.
A gap of 0 is the pipeline's choice.

    python benchmarks/bench_cv_gap.py [--results results] [--config config/config.yaml] [--model trf2]
        [--gaps 0 5 20 50]

Writes benchmarks/results/cv_gap.tsv (run it from the repository root): per head and gap, the chosen relative ridge (inf: no term),
the cross-validated mean squared error of the chosen ridge and of "no term" (the head's target
units squared), their difference (gain) and its standard error (gain_se).
"""

import argparse
from pathlib import Path

import pandas as pd
import results_table
import torch

from thermocg import config as configuration
from thermocg import kinds, response, train
from thermocg.config import model_spec_with_defaults, temperature_label


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--model", default="trf2", help="an entry of kind trf1 or trf2")
    parser.add_argument("--gaps", type=int, nargs="+", default=[0, 5, 20, 50], help="frames left out on each side")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = configuration.load(args.config)
    spec = model_spec_with_defaults(config["models"].get(args.model, {"kind": None}))
    if spec["kind"] not in kinds.RESPONSE_KINDS:
        parser.error(f"--model must name an entry of kind {' or '.join(sorted(kinds.RESPONSE_KINDS))} of {args.config}")
    results = Path(args.results)
    label = temperature_label(config["reference_temperature"])
    fm_ref = next(name for name, entry in config["models"].items() if entry["kind"] == "fm_ref")
    # the entry's model on the run's fm_ref W0 and its frames, as the pipeline's fit takes them
    model, sets, _, _ = train._prepare(args.model, spec, config, {label: results / f"cg/T{label}/beads.npz"},
                                       {label: results / f"cg/T{label}/molecule_energies.npz"}, 1, None,
                                       results / f"models/{fm_ref}/model.pt")
    frames = sets["train"] + sets["validation"]
    print(f"{len(frames)} T0 frames; building the normal equations (minutes)", flush=True)
    systems = response.thermal_systems(model, spec.get("estimator", "local"), frames)
    heads = {"e": response.energy_system(model, frames), **systems.heads}
    rows = []
    for head, system in heads.items():
        penalty = response.penalty_for(model, head, len(system.rhs))
        for gap in args.gaps:
            _, candidates = response.solve_ridge(system, penalty, gap_frames=gap)
            chosen = next(row for row in candidates if row["chosen"])
            rows.append({"head": head, "gap_frames": gap, "chosen_relative_ridge": chosen["relative_ridge"],
                         "cross_validation_mse": chosen["cross_validation_mse"],
                         "no_term_mse": candidates[0]["cross_validation_mse"],
                         "gain": candidates[0]["cross_validation_mse"] - chosen["cross_validation_mse"],
                         "gain_se": chosen["gain_se"]})
    results_table.write(pd.DataFrame(rows), Path("benchmarks/results/cv_gap.tsv"))


if __name__ == "__main__":
    main()
