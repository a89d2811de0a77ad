"""Evaluation of fitted CG models (METHOD.md, "Observables and error metrics").

- Force error: RMSE of the model's mean force F(R; beta(T)) against the mapped forces on the
  held-out test frames of each temperature, always next to the fm_oracle's RMSE at that T (the
  mapped forces carry irreducible noise, so the oracle's RMSE is the floor).
- Thermal response: the model's dF/dbeta at T0 on the T0 test frames against the finite-difference
  truth (F_+(R) - F_-(R)) / (beta_+ - beta_-) of the fm_oracle models at the neighbouring sampled
  temperatures, as relative RMSE and cosine similarity.
"""

import numpy as np
import pandas as pd
import torch

from thermocg import io, nn, targets, units
from thermocg.config import temperature_label
from thermocg.neighbors import NeighborList
from thermocg.train import split_indices


def test_frames(beads_path, training):
    """Positions, forces and box of the held-out test frames of one temperature (numpy)."""
    beads = io.load_frames(beads_path)
    split = split_indices(len(beads["time"]), training["validation_fraction"], training["test_fraction"], training["frame_stride"])
    k = split["test"]
    return beads["positions"][k], beads["forces"][k], beads["box"][k]


def model_forces(model, positions, box, dbeta):
    """Mean force F(R; beta) (F, N, 3) of a model on frames, kJ/(mol nm)."""
    dtype = next(model.parameters()).dtype
    neighbors = NeighborList(model.cutoff)
    out = []
    for frame, lengths in zip(positions, box):
        x = torch.as_tensor(frame, dtype=dtype)
        pairs = neighbors(x, torch.as_tensor(lengths, dtype=dtype))
        out.append(nn.energy_and_forces(model, x, *pairs, dbeta)[1].double().numpy())
    return np.stack(out)


def thermal_response(model, positions, box, step=1e-4):
    """dF/dbeta at beta0 by a central difference in dbeta: exact for W = W0 + dbeta W1 + dbeta^2 W2 / 2."""
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


def neighbouring_temperatures(temperatures, reference):
    """The sampled temperatures just below and just above T0, or None if T0 is at an end."""
    below = [t for t in temperatures if t < reference]
    above = [t for t in temperatures if t > reference]
    return (max(below), min(above)) if below and above else None


def response_table(models, oracles, beads_reference, temperatures, reference, training):
    """Rows (model, rel_rmse, cosine, ...) comparing each model's dF/dbeta at T0 with the oracle truth."""
    pair = neighbouring_temperatures(temperatures, reference)
    if pair is None or any(temperature_label(t) not in oracles for t in pair):
        return pd.DataFrame(columns=["model", "kind", "estimator", "rel_rmse", "cosine", "truth_rms", "T_minus_K", "T_plus_K", "n_frames"])
    positions, _, box = test_frames(beads_reference, training)
    minus, plus = (model_forces(oracles[temperature_label(t)], positions, box, 0.0) for t in pair)
    truth = torch.as_tensor((plus - minus) / float(units.beta(pair[1]) - units.beta(pair[0])))
    rows = []
    for name, (model, metadata) in models.items():
        predicted = torch.as_tensor(thermal_response(model, positions, box))
        rows.append({
            "model": name, "kind": metadata["kind"],
            "estimator": metadata["spec"].get("estimator", "") if metadata["kind"] in ("trf1", "trf2") else "",
            "rel_rmse": float(targets.relative_rmse(predicted, truth)),
            "cosine": float(targets.cosine_similarity(predicted, truth)),
            "truth_rms": float(truth.pow(2).mean().sqrt()), "T_minus_K": pair[0], "T_plus_K": pair[1],
            "n_frames": len(positions),
        })
    return pd.DataFrame(rows)
