"""Parameter sweeps of the thermal response fit: one fit per combination, one table and figure.

A combination (a row of the sweep table, Snakemake's Paramspace) sets the expansion order (trf1 or
trf2), the estimator (local or global), r_loc (nm) and the frame stride (how many frames train).
Each fit (a force-matched W0 and the closed-form thermal terms on it) is judged by the held-out
score of its dF/dbeta at T0 (thermocg.metrics: the same frames and y1 targets for every
combination, so that the summary ranks them with paired standard errors) and by its force RMSE on
the held-out frames of the main config's split.
"""

import copy
from pathlib import Path

import pandas as pd

from thermocg import io, metrics, nn, train
from thermocg.config import model_spec_with_defaults, temperature_label


def point_name(point):
    return "sweep_" + "_".join(f"{key}-{value}" for key, value in point.items())


def fit_point(point, config, beads, energies, centring, score_runs, model_path, curve_path, checkpoint_path,
              threads=1):
    """Fit the combination ``point`` at T0; return its one-row evaluation table and its per-frame
    held-out scores (thermocg.metrics.held_out_scores, centred with the model file ``centring``;
    ``score_runs``: (beads, energies) of independent T0 runs, as for the pipeline's own table).

    The point's frame stride applies to the force-matched W0 (trained here, next to the model
    file) and to the closed-form thermal terms on top of it, so a sweep over it is a sweep over
    the number of T0 frames.
    """
    spec = model_spec_with_defaults({"kind": f"trf{int(point['order'])}", "estimator": str(point["estimator"]),
                                     "r_loc": float(point["r_loc"])})
    varied = copy.deepcopy(config)
    stride = int(point["frame_stride"])
    n_frames = len(io.load_frames(beads)["time"])
    training = config["training"]
    split = train.split_indices(n_frames, training["validation_fraction"], training["test_fraction"], stride)
    test = metrics.test_indices(n_frames, training)
    if split["validation"][-1] >= test[0]:  # every combination is scored on the same held-out frames
        raise ValueError(f"sweep combination {point}: frame_stride {stride} puts validation frames among the "
                         f"held-out test frames of the main split (from frame {test[0]} of {n_frames}); "
                         "choose another stride")
    varied["training"].update(frame_stride=stride, response_frame_stride=stride)
    label = temperature_label(config["reference_temperature"])
    w0_path = Path(model_path).with_name("w0_model.pt")
    train.train_model(point_name(point) + "_w0", {"kind": "fm_ref"}, varied, {label: beads}, {},
                      w0_path, Path(curve_path).with_name("w0_learning_curve.tsv"), checkpoint_path, threads)
    train.train_model(point_name(point), spec, varied, {label: beads}, {label: energies},
                      model_path, curve_path, checkpoint_path, threads, w0_model=w0_path)
    model, _ = nn.load_model(model_path)
    frames = metrics.score_frames(beads, training, energies, score_runs)
    scores = metrics.held_out_scores({"point": model}, nn.load_model(centring)[0], *frames)["point"]
    positions, forces, box = (part[:len(test)] for part in frames[:3])  # the T0 run's test frames come first
    own = metrics.score_columns({"point": scores})["point"]  # its score and SE (a gap needs the others)
    row = dict(point, kind=spec["kind"], n_training_frames=len(split["train"]), score=own["score"],
               score_se=own["score_se"], score_r_loc_nm=metrics.SCORE_R_LOC, n_score_frames=len(scores),
               force_rmse=metrics.rmse(metrics.model_forces(model, positions, box, 0.0), forces))
    return pd.DataFrame([row]), scores


def summarize(rows, scores):
    """All combinations' rows in one table (``rows``: their tables), with each one's gap below the
    best score, paired on the same frames (``scores``: their per-frame scores, in the same order)."""
    table = pd.concat([io.read_table(path) for path in rows], ignore_index=True)
    columns = metrics.score_columns({k: io.read_table(path)["score"].to_numpy() for k, path in enumerate(scores)})
    for column in ("score_below_best", "score_below_best_se"):
        table[column] = [columns[k][column] for k in range(len(table))]
    return table
