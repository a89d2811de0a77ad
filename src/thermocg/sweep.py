"""Parameter sweeps of the thermal response fit: one fit per combination, one table and figure.

A combination (a row of the sweep table, Snakemake's Paramspace) sets the expansion order (trf1 or
trf2), the estimator (local or global), r_loc (nm) and the frame stride (how many frames train).
Each fit (a force-matched W0 and the closed-form thermal terms on it) is judged by its dF/dbeta at T0 against the fm_oracle finite differences, on the same
held-out frames for every combination (the split of the main config), and by its force RMSE there.
"""

import copy
from pathlib import Path

import pandas as pd

from thermocg import io, metrics, nn, train
from thermocg.config import model_spec_with_defaults, temperature_label


def point_name(point):
    return "sweep_" + "_".join(f"{key}-{value}" for key, value in point.items())


def fit_point(point, config, beads, energies, oracle_paths, model_path, curve_path, checkpoint_path, threads=1):
    """Fit the combination ``point`` at T0 and return its one-row evaluation table.

    The point's frame stride applies to the force-matched W0 (trained here, next to the model
    file) and to the closed-form thermal terms on top of it, so a sweep over it is a sweep over
    the number of T0 frames.
    """
    spec = model_spec_with_defaults({"kind": f"trf{int(point['order'])}", "estimator": str(point["estimator"]),
                                     "r_loc": float(point["r_loc"])})
    varied = copy.deepcopy(config)
    stride = int(point["frame_stride"])
    varied["training"].update(frame_stride=stride, response_frame_stride=stride)
    label = temperature_label(config["reference_temperature"])
    w0_path = Path(model_path).with_name("w0_model.pt")
    train.train_model(point_name(point) + "_w0", {"kind": "fm_ref"}, varied, {label: beads}, {},
                      w0_path, Path(curve_path).with_name("w0_learning_curve.tsv"), checkpoint_path, threads)
    model, curve = train.train_model(point_name(point), spec, varied, {label: beads}, {label: energies},
                                     model_path, curve_path, checkpoint_path, threads, w0_model=w0_path)
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
                                stride)
    row.update(point)
    row.update(n_training_frames=len(split["train"]),
               force_rmse=metrics.rmse(metrics.model_forces(model, positions, box, 0.0), forces))
    return pd.DataFrame([row])


def summarize(paths):
    """All combinations' rows in one table."""
    return pd.concat([io.read_table(path) for path in paths], ignore_index=True)
