"""Parameter sweeps of the thermal response fit: one fit per combination, one table and figure.

A combination (a row of the sweep table, Snakemake's Paramspace) sets the expansion order (trf1 or
trf2), the estimator (local or global), r_loc (nm) and the frame stride (how many frames train).
Each fit is judged by its dF/dbeta at T0 against the fm_oracle finite differences, on the same
held-out frames for every combination (the split of the main config), and by its force RMSE there.
"""

import copy

import pandas as pd

from thermocg import io, metrics, nn, train
from thermocg.config import temperature_label


def point_name(point):
    return "sweep_" + "_".join(f"{key}-{value}" for key, value in point.items())


def fit_point(point, config, beads, energies, oracle_paths, model_path, curve_path, checkpoint_path, threads=1):
    """Train the combination ``point`` at T0 and return its one-row evaluation table."""
    spec = {"kind": f"trf{int(point['order'])}", "estimator": str(point["estimator"]), "r_loc": float(point["r_loc"])}
    varied = copy.deepcopy(config)
    varied["training"]["frame_stride"] = int(point["frame_stride"])
    label = temperature_label(config["reference_temperature"])
    model, curve = train.train_model(point_name(point), spec, varied, {label: beads}, {label: energies},
                                     model_path, curve_path, checkpoint_path, threads)
    _, metadata = nn.load_model(model_path)
    oracles = {}
    for path in oracle_paths:
        oracle, oracle_metadata = nn.load_model(path)
        oracles[temperature_label(oracle_metadata["trained_at_K"][0])] = oracle
    response = metrics.response_table({metadata["name"]: (model, metadata)}, oracles, beads, config["temperatures"],
                                      config["reference_temperature"], config["training"])
    positions, forces, box = metrics.test_frames(beads, config["training"])
    row = response.iloc[0].to_dict()
    n_frames = len(io.load_frames(beads)["time"])
    split = train.split_indices(n_frames, config["training"]["validation_fraction"], config["training"]["test_fraction"],
                                int(point["frame_stride"]))
    row.update(point)
    row.update(n_training_frames=len(split["train"]), epochs=len(curve),
               force_rmse=metrics.rmse(metrics.model_forces(model, positions, box, 0.0), forces))
    return pd.DataFrame([row])


def summarize(paths):
    """All combinations' rows in one table."""
    return pd.concat([io.read_table(path) for path in paths], ignore_index=True)
