"""Evaluation of fitted CG models (METHOD.md, "Observables and error metrics").

- Force error: RMSE of the model's mean force F(R; beta(T)) against the mapped forces on the
  held-out test frames of each temperature, always next to the fm_oracle's RMSE at that T (the
  mapped forces carry irreducible noise, so the oracle's RMSE is the floor).
- Thermal response: the model's dF/dbeta at T0 judged by the held-out score of METHOD.md ("Judging
  a thermal response"): local y1 targets on T0 frames no fit saw, scored by :func:`response_score`,
  with standard errors and the paired gap to the best model, which rank models. (Not against the
  finite difference of the fm_oracle models around T0: that truth is mostly the oracles' fitting
  noise, METHOD.md.)
- Radial thermal response: the pair-projected force profile (METHOD.md) of the FG forces and of each
  model's F(R; beta(T)) on the same FG frames at the sampled temperatures around T0, differentiated
  in beta by a finite difference (:func:`radial_response`).
"""

import numpy as np
import pandas as pd
import torch

from thermocg import io, kinds, nn, observables, targets, units
from thermocg.config import temperature_label
from thermocg.neighbors import NeighborList
from thermocg.train import split_indices


# nm: the radius of the local y1 targets of the held-out score, fixed so that every model is
# judged against the same targets whatever r_loc it was trained with (METHOD.md's measured one).
SCORE_R_LOC = 0.5
#: Blocks of consecutive test frames for the score's standard error.
SCORE_BLOCKS = 10


def test_indices(n_frames, training):
    """Indices of the held-out test frames: every frame of the test time range that no fit saw.

    Networks train on every ``frame_stride``-th frame, the closed-form fits on every
    ``response_frame_stride``-th (thermocg.train); the test range is the end of the time-ordered
    split, after both.
    """
    fractions = training["validation_fraction"], training["test_fraction"]
    last_seen = max(split_indices(n_frames, *fractions, training[key])["validation"][-1]
                    for key in ("frame_stride", "response_frame_stride"))
    every = split_indices(n_frames, *fractions, 1)
    return every["test"][every["test"] > last_seen]


def test_frames(beads_path, training):
    """Positions, forces and box of the held-out test frames of one temperature (numpy)."""
    beads = io.load_frames(beads_path)
    k = test_indices(len(beads["time"]), training)
    return beads["positions"][k], beads["forces"][k], beads["box"][k]


#: Beads per model call of :func:`model_forces`. Frames of few beads cost mostly the per-call
#: overhead, so they are evaluated together as one system of disjoint parts (2-bead frames: 3-8x
#: faster); a call of 256 beads is mostly arithmetic (16 such frames per call: 1.3x), so frames of
#: 256 beads or more go one per call and give the numbers of one frame alone, to the bit.
BEADS_PER_CALL = 256


def model_forces(model, positions, box, dbeta):
    """Mean force F(R; beta) (F, N, 3) of a model on frames, kJ/(mol nm).

    Several frames go through the model in one call, their beads numbered one after another and
    each frame's pairs within itself (a bead's force depends on its own frame only).
    """
    dtype = next(model.parameters()).dtype
    neighbors = NeighborList(model.cutoff)
    n_frames, n_beads = positions.shape[:2]
    per_call = max(1, BEADS_PER_CALL // max(n_beads, 1))
    out = []
    for start in range(0, n_frames, per_call):
        frames = torch.as_tensor(positions[start:start + per_call], dtype=dtype)
        pairs = []
        for k, (frame, lengths) in enumerate(zip(frames, box[start:start + per_call])):
            i, j, shift = neighbors(frame, torch.as_tensor(lengths, dtype=dtype))
            pairs.append((i + k * n_beads, j + k * n_beads, shift))
        i, j, shift = (torch.cat(part) for part in zip(*pairs))
        forces = nn.energy_and_forces(model, frames.reshape(-1, 3), i, j, shift, dbeta)[1]
        out.append(forces.double().numpy().reshape(len(frames), n_beads, 3))
    return np.concatenate(out)


def thermal_response(model, positions, box, step=1e-4):
    """dF/dbeta at beta0 by a central difference in dbeta: -grad W1 for either expansion (exact for the
    beta series, to O(step^2) for the reduced one)."""
    plus = model_forces(model, positions, box, step)
    minus = model_forces(model, positions, box, -step)
    return (plus - minus) / (2 * step)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def force_table(models, oracle_name, oracles, beads, training, beta0):
    """Rows (model, kind, T_K, force_rmse, force_rmse_oracle, n_frames) for every model and temperature.

    models: {name: (model, metadata)}; oracle_name, oracles: the name of the fm_oracle entry and
    its {T label: model} (None and empty without one); beads: {T label: path}.
    """
    rows = []
    for label, path in beads.items():
        positions, forces, box = test_frames(path, training)
        temperature = float(label)
        dbeta = float(units.beta(temperature)) - beta0
        oracle_rmse = rmse(model_forces(oracles[label], positions, box, 0.0), forces) if label in oracles else np.nan
        for name, (model, metadata) in models.items():
            rows.append({
                "model": name, "kind": metadata["kind"], "T_K": temperature,
                "trained_at": ",".join(f"{t:g}" for t in metadata["trained_at_K"]),
                "force_rmse": rmse(model_forces(model, positions, box, dbeta), forces),
                "force_rmse_oracle": oracle_rmse, "n_frames": len(positions),
            })
        if label in oracles:
            rows.append({"model": oracle_name, "kind": "fm_oracle", "T_K": temperature, "trained_at": f"{temperature:g}",
                         "force_rmse": oracle_rmse, "force_rmse_oracle": oracle_rmse, "n_frames": len(positions)})
    return pd.DataFrame(rows)


def response_targets(positions, forces, box, bead_energies, mean_forces, r_loc=SCORE_R_LOC):
    """Local first-order targets y1 (F, N, 3), (kJ/mol)^2/nm, on evaluation frames (METHOD.md).

    y1_I = -(f_I - F_I) sum_{J in N(I)} (u_J - e), N(I) the beads within ``r_loc`` nm of I.
    ``mean_forces`` F (F, N, 3) come from one fixed model, the same for every model scored. e is
    one constant, the mean of u_J (kJ/mol) over these frames and beads: with a good F any constant
    leaves E[y1 | R] unchanged (thermocg.targets), and a learned e_J(R) would differ between models.
    """
    energies = torch.as_tensor(bead_energies, dtype=torch.float64)
    constant = energies.mean()
    neighbors = NeighborList(r_loc)
    out = []
    for k in range(len(positions)):
        x = torch.as_tensor(positions[k], dtype=torch.float64)
        pairs = targets.local_pairs(x, torch.as_tensor(box[k], dtype=torch.float64), r_loc, neighbors)
        force = torch.as_tensor(forces[k], dtype=torch.float64)
        mean_force = torch.as_tensor(mean_forces[k], dtype=torch.float64)
        out.append(targets.first_order_local_target(force, mean_force, energies[k], constant, pairs).numpy())
    return np.stack(out)


def response_score(y1, predicted):
    """Held-out score of a thermal response F_b,model (METHOD.md, "Judging a thermal response").

    score = mean |y1|^2 - mean |y1 - F_b,model|^2, squares summed over components, means over beads
    and frames; units ((kJ/mol)^2/nm)^2 = (kJ/mol)^4/nm^2, those of |dF/dbeta|^2. Since E[y1 | R] =
    F_b, its expectation is |F_b|^2 - |F_b - F_b,model|^2 (the noise of y1 cancels): higher is
    better, the true F_b scores the most, |F_b|^2, and predicting zero scores exactly 0.

    y1 (F, N, d); predicted broadcasts to it. Returns (score, standard error, per-frame scores (F,)),
    the SE over blocks of consecutive frames (beads of one frame are correlated, and so are
    neighbouring frames of one trajectory; with up to SCORE_BLOCKS frames, each frame is a block).
    """
    y1 = np.asarray(y1, dtype=np.float64)
    residual = y1 - np.asarray(predicted, dtype=np.float64)
    per_frame = (np.sum(y1**2, axis=-1) - np.sum(residual**2, axis=-1)).reshape(len(y1), -1).mean(axis=1)
    return (*_mean_and_standard_error(per_frame), per_frame)


def _mean_and_standard_error(per_frame):
    """Mean of per-frame scores and its standard error over SCORE_BLOCKS blocks of consecutive frames."""
    return float(np.mean(per_frame)), observables.block_standard_error(per_frame, SCORE_BLOCKS)


def paired_score_difference(per_frame_a, per_frame_b):
    """(mean, standard error) of score(a) - score(b) from :func:`response_score`'s per-frame scores
    of two models on the same frames. The y1 noise that both see cancels in the difference, so two
    models whose scores' standard errors overlap may still be ranked (the SE over blocks of frames)."""
    difference = np.asarray(per_frame_a, dtype=np.float64) - np.asarray(per_frame_b, dtype=np.float64)
    return float(difference.mean()), observables.block_standard_error(difference, SCORE_BLOCKS)


def centring_model(models, oracles, oracle_name, reference):
    """(name, model) of the fixed mean force that centres y1: the fm_oracle of T0 if there is one,
    else the fm_ref-kind model; ("", None) without either."""
    label = temperature_label(reference)
    if label in oracles:
        return oracle_name, oracles[label]
    for name, (model, metadata) in models.items():
        if metadata["kind"] == "fm_ref":
            return name, model
    return "", None


RESPONSE_COLUMNS = ["model", "kind", "estimator", "score", "score_se", "score_below_best", "score_below_best_se",
                    "centring_model", "score_r_loc_nm", "n_frames"]


def score_columns(per_frame_scores):
    """{name: {score, score_se, score_below_best, score_below_best_se}} from :func:`response_score`'s
    per-frame scores of models on the same frames ({name: (F,)}): each score with its standard error,
    and the best model's score minus each one's, paired (:func:`paired_score_difference`)."""
    best = max(per_frame_scores, key=lambda name: per_frame_scores[name].mean())
    columns = {}
    for name, per_frame in per_frame_scores.items():
        gap, gap_se = paired_score_difference(per_frame_scores[best], per_frame)
        score, score_se = _mean_and_standard_error(per_frame)
        columns[name] = {"score": score, "score_se": score_se, "score_below_best": gap, "score_below_best_se": gap_se}
    return columns


def _bead_energies(energies_path, beads):
    """u_J (F, N) of a run, checked against its beads file (the same indices must pick the same frames)."""
    bead_energies = io.load_frames(energies_path)["bead_energies"]
    if len(bead_energies) != len(beads["time"]):
        raise ValueError(f"{energies_path} has {len(bead_energies)} frames, its beads file has {len(beads['time'])}")
    return bead_energies


def score_frames(beads_reference, training, energies_reference=None, score_runs=()):
    """The held-out T0 frames of the thermal-response score: the T0 run's test frames, then every frame
    of each independent T0 run in ``score_runs`` ((beads path, energies path) pairs: no fit saw them).

    Returns positions, forces, box and the per-bead energies u_J (None without ``energies_reference``).
    """
    beads = io.load_frames(beads_reference)
    k = test_indices(len(beads["time"]), training)
    runs = [(beads["positions"][k], beads["forces"][k], beads["box"][k],
             None if energies_reference is None else _bead_energies(energies_reference, beads)[k])]
    for beads_path, energies_path in score_runs:
        run = io.load_frames(beads_path)
        runs.append((run["positions"], run["forces"], run["box"],
                     None if energies_reference is None else _bead_energies(energies_path, run)))
    positions, forces, box, bead_energies = zip(*runs)
    bead_energies = None if energies_reference is None else np.concatenate(bead_energies)
    return np.concatenate(positions), np.concatenate(forces), np.concatenate(box), bead_energies


def response_table(models, oracles, beads_reference, reference, training, energies_reference=None,
                   oracle_name="fm_oracle", score_runs=()):
    """One row per model: its dF/dbeta at T0 judged by the held-out score (METHOD.md, "Judging a
    thermal response") on the frames of :func:`score_frames`.

    - score, score_se: :func:`response_score` against local y1 targets (radius score_r_loc_nm)
      built from the per-bead energies ``energies_reference`` of T0 and centred with the mean force
      of ``centring_model`` (:func:`centring_model`); NaN without energies or a centring model.
      fm_ref (F_b = 0) scores 0.
    - score_below_best, score_below_best_se: the best-scoring model's score minus this one's,
      paired on the same frames (:func:`score_columns`): the ranking with its uncertainty.
    n_frames: the number of held-out frames.

    Not a comparison with the finite difference of the fm_oracle models around T0: that truth is
    mostly the oracles' own fitting noise and cannot rank models (METHOD.md); the radial profile
    (:func:`radial_response`) is the finite-difference check, on FG forces.
    """
    centring_name, centring = centring_model(models, oracles, oracle_name, reference)
    frames = score_frames(beads_reference, training, energies_reference, score_runs)
    rows = [{"model": name, "kind": metadata["kind"],
             "estimator": metadata["spec"].get("estimator", "") if metadata["kind"] in kinds.RESPONSE_KINDS else "",
             "n_frames": len(frames[0])} for name, (model, metadata) in models.items()]
    if frames[3] is not None and centring is not None:
        scores = score_columns(held_out_scores({name: model for name, (model, _) in models.items()}, centring, *frames))
        for row in rows:
            row.update(scores[row["model"]], centring_model=centring_name, score_r_loc_nm=SCORE_R_LOC)
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)


def held_out_scores(models, centring, positions, forces, box, bead_energies):
    """{name: per-frame held-out scores (F,)} of each model's dF/dbeta ({name: model}) against local y1
    targets on the frames of :func:`score_frames`, centred with the mean force of the model ``centring``."""
    y1 = response_targets(positions, forces, box, bead_energies, model_forces(centring, positions, box, 0.0))
    return {name: response_score(y1, thermal_response(model, positions, box))[2] for name, model in models.items()}


#: nm: bins of the pair-projected force profile (METHOD.md's 0.02 nm) and its range (at most half the box).
RADIAL_BIN_WIDTH = 0.02
RADIAL_RANGE = (0.22, 0.9)


def pair_projected_forces(positions, forces, box, edges):
    """Per-frame pair-projected force profile, kJ/(mol nm): in each distance bin, the mean over the
    pairs I < J of (f_J - f_I) . rhat_IJ / 2 (rhat_IJ from I to J; positive pushes the pair apart).

    For a pure pair potential u(r) the profile is -u'(r). positions, forces (F, N, 3), box (F, 3)
    (orthorhombic, minimum image). Returns (F, B), NaN where a frame has no pair in a bin.
    """
    n_beads = positions.shape[1]
    first, second = np.triu_indices(n_beads, k=1)
    profiles = []
    for x, f, lengths in zip(positions, forces, box):
        d = x[second] - x[first]
        d -= lengths * np.round(d / lengths)
        r = np.sqrt((d * d).sum(1))
        projection = 0.5 * ((f[second] - f[first]) * d).sum(1) / r
        sums, _ = np.histogram(r, edges, weights=projection)
        counts, _ = np.histogram(r, edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            profiles.append(sums / counts)
    return np.array(profiles)


def radial_response(models, beads_minus, beads_plus, temperature_minus, temperature_plus, beta0):
    """Radial profile of the thermal response: d/dbeta of the pair-projected force profile by a
    finite difference between two sampled temperatures T- < T0 < T+ (METHOD.md, "Judging a thermal
    response"), for the FG forces (the truth) and for each model's F(R; beta(T)) on the same FG frames.

    Evaluating the model on the FG frames of each temperature makes the comparison exact: the FG
    profile at T is the projection of the true mean force at T over the true configurations, so the
    difference to a model's is the projection of that model's force error at T, and the change of
    the configurations with T cancels from it. (F_b of a model projected on T0 frames alone would
    miss that change.) Every frame of both temperatures is used; a model trained on them (the
    oracles, mtfm) is marked in ``trained_at``.

    models: {name: (model, metadata)}. Returns a table with one row per (model, bin): r_nm,
    response (kJ/mol)^2/nm = (P(T+) - P(T-)) / (beta+ - beta-), error = model - FG and its standard
    error over blocks of frames (the FG rows: error 0 and the truth's own standard error).
    """
    frames = [io.load_frames(path) for path in (beads_minus, beads_plus)]
    r_max = min(RADIAL_RANGE[1], 0.5 * min(float(b["box"].min()) for b in frames))  # pairs beyond L/2 are not all seen
    edges = np.arange(RADIAL_RANGE[0], r_max + 1e-9, RADIAL_BIN_WIDTH)
    centres = 0.5 * (edges[1:] + edges[:-1])
    temperatures = (temperature_minus, temperature_plus)
    betas = [float(units.beta(t)) for t in temperatures]
    dbeta_span = betas[1] - betas[0]
    fg = [pair_projected_forces(b["positions"], b["forces"], b["box"], edges) for b in frames]

    @np.errstate(invalid="ignore", divide="ignore")
    def difference(per_temperature):  # (P(T+) - P(T-)) / dbeta and its standard error, per bin
        means = [np.nansum(p, axis=0) / np.isfinite(p).sum(axis=0) for p in per_temperature]  # NaN: no pair
        errors = [np.array([observables.block_standard_error(column[np.isfinite(column)], SCORE_BLOCKS)
                            for column in p.T]) for p in per_temperature]
        return (means[1] - means[0]) / dbeta_span, np.hypot(*errors) / abs(dbeta_span)

    truth, truth_se = difference(fg)
    rows = [{"model": "FG", "kind": "", "trained_at": "", "r_nm": centres, "response": truth, "error": 0.0,
             "error_se": truth_se}]
    for name, (model, metadata) in models.items():
        projected = [pair_projected_forces(b["positions"], model_forces(model, b["positions"], b["box"], beta - beta0),
                                           b["box"], edges) for b, beta in zip(frames, betas)]
        response, _ = difference(projected)
        error, error_se = difference([p - q for p, q in zip(projected, fg)])
        rows.append({"model": name, "kind": metadata["kind"],
                     "trained_at": ",".join(f"{t:g}" for t in metadata["trained_at_K"]),
                     "r_nm": centres, "response": response, "error": error, "error_se": error_se})
    table = pd.concat([pd.DataFrame(row) for row in rows], ignore_index=True)
    table["T_minus_K"], table["T_plus_K"] = temperatures
    return table[np.isfinite(table["response"])].reset_index(drop=True)


def radial_summary(table):
    """Per model of a :func:`radial_response` table: radial_rmse, the rms over bins of its error
    against FG, and radial_rmse_noise, the rms of that error's standard error (what a model with
    the true response would score), both (kJ/mol)^2/nm."""
    models = table[table["model"] != "FG"].groupby("model", sort=False)
    return pd.DataFrame({
        "radial_rmse": models["error"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
        "radial_rmse_noise": models["error_se"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
    }).reset_index()
