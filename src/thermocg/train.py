"""Fitting every CG model of METHOD.md's table.

Network training (force matching; every term a relative MSE):

    fm_ref, fm_oracle  W0       forces f at one temperature (T0, or each T for the oracle)
    mtfm               W0,W1,W2 forces at several temperatures with F(R; beta) of the expansion

Closed-form fits on fm_ref's frozen W0 (same T0 frames; thermocg.response):

    em                 + e      per-bead energies e_J against the FG shares u_J
                                (E(R) = sum_J e_J; F_b = (F_E - F)/beta0, so W1 = (E - W_prior - W0)/beta0)
    trf1               + e, W1  first-order thermal response targets y1 (global or local)
    trf2               + W2     and second-order targets y2

The networks train on every ``frame_stride``-th frame, the closed-form fits on every
``response_frame_stride``-th (default every frame: y1 / y2 are noise-dominated, so every frame
helps). Their normal equations cost about 0.2 s per frame on one core (the basis forces of a
network read-out); :func:`build_response_systems` makes them once for the trf1 and trf2 entries
that differ only in their kind, and :func:`train_model` fits each from that file.

Frames of each temperature are split in time (train, then validation, then test) so that
correlated neighbouring frames do not leak across the split. Training checkpoints every epoch
(model, optimiser, scheduler, best state, learning curve; :mod:`thermocg.checkpoints`, bound to
the training settings, the network and the data files) and resumes after a kill; with the same
seed and one thread it gives the same numbers. The checkpoint is removed once the model is saved.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import checkpoints, io, nn, response, targets, units
from thermocg.config import temperature_label
from thermocg.kinds import HEADS, NEEDS_ENERGIES, RESPONSE_KINDS, SHARED_W0, training_temperatures
from thermocg.neighbors import NeighborList

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One CG frame ready for the network (tensors on the training device)."""

    positions: torch.Tensor  # (N, 3) nm
    forces: torch.Tensor  # (N, 3) kJ/(mol nm)
    energy: torch.Tensor  # () kJ/mol, float64
    bead_energies: torch.Tensor | None  # (N,) kJ/mol, float64
    pairs: tuple  # (i, j, shift) at the model cutoff
    local_pairs: tuple | None  # (i, j) within r_loc
    dbeta: float  # beta - beta0, mol/kJ


def split_indices(n_frames, validation_fraction, test_fraction, stride=1):
    """Time-ordered split of frame indices (every ``stride``-th frame) into train, validation, test."""
    chosen = np.arange(0, n_frames, stride)
    n_test = max(1, int(round(test_fraction * len(chosen))))
    n_val = max(1, int(round(validation_fraction * len(chosen))))
    if len(chosen) - n_test - n_val < 1:
        raise ValueError(f"{len(chosen)} frames are too few to split into train/validation/test")
    return {
        "train": chosen[: len(chosen) - n_val - n_test],
        "validation": chosen[len(chosen) - n_val - n_test : len(chosen) - n_test],
        "test": chosen[len(chosen) - n_test :],
    }


def load_frames(beads_path, indices, cutoff, beta0, dtype, device, energies_path=None, r_loc=None):
    """Frames of one temperature (selected ``indices``) with pair lists precomputed."""
    beads = io.load_frames(beads_path)
    bead_energies = io.load_frames(energies_path)["bead_energies"] if energies_path else None
    dbeta = float(units.beta(float(beads["temperature"]))) - beta0
    neighbors = NeighborList(cutoff)
    frames = []
    for k in indices:
        positions = torch.as_tensor(beads["positions"][k], dtype=dtype, device=device)
        box = torch.as_tensor(beads["box"][k], dtype=dtype, device=device)
        local = None
        if r_loc is not None:
            local = targets.local_pairs(positions, box, r_loc)[:2]
        frames.append(Frame(
            positions=positions,
            forces=torch.as_tensor(beads["forces"][k], dtype=dtype, device=device),
            energy=torch.as_tensor(beads["potential_energy"][k], dtype=torch.float64, device=device),
            bead_energies=None if bead_energies is None else torch.as_tensor(bead_energies[k], dtype=torch.float64, device=device),
            pairs=neighbors(positions, box),
            local_pairs=local,
            dbeta=dbeta,
        ))
    return frames


def _relative_mse(prediction, target):
    return ((prediction - target) ** 2).mean() / (target.detach() ** 2).mean().clamp_min(1e-30)


class Objective:
    """The force-matching loss of a network-trained kind (fm_ref, fm_oracle, mtfm) on a batch of frames.

    mtfm matches F(R; beta) = -grad (W0 + c1 W1 + c2 W2) at each frame's temperature, with the
    model's own expansion coefficients (nn.CGModel.expansion_coefficients).
    """

    def __init__(self, kind):
        if kind not in HEADS:
            raise ValueError(f"unknown model kind '{kind}': one of {sorted(HEADS)}")
        if kind in SHARED_W0:
            raise ValueError(f"kind {kind} is fitted in closed form on a shared W0 (thermocg.response), not trained")
        self.kind = kind

    def __call__(self, model, frames, epoch, create_graph=True):
        positions, i, j, shift, _ = nn.batch_frames([(f.positions, *f.pairs) for f in frames])
        n_beads = frames[0].positions.shape[0]
        # each bead at its frame's dbeta: one gradient of the summed W gives every frame's F(R; beta)
        # (a backward pass per head cost mtfm twice as much)
        dbeta = torch.cat([positions.new_full((n_beads,), f.dbeta) for f in frames])
        _, mean_force = nn.energy_and_forces(model, positions, i, j, shift, dbeta, create_graph)
        observed = torch.cat([f.forces for f in frames])
        return {"force": _relative_mse(mean_force, observed)}


def _evaluate(objective, model, frames, epoch, batch):
    totals = {}
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        for name, value in objective(model, chunk, epoch, create_graph=False).items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(chunk)
    return {name: value / len(frames) for name, value in totals.items()}


def _moving_average(average, model, decay):
    """The weights' exponential moving average after one more step (the weights themselves at the first)."""
    weights = [p.detach() for p in model.parameters()]
    if average is None:
        return [w.clone() for w in weights]
    for a, w in zip(average, weights):
        a.lerp_(w, 1.0 - decay)
    return average


def _swap_in(model, weights):
    """Load ``weights`` (a list in model.parameters() order; None: leave the model) and return the old ones."""
    if weights is None:
        return None
    old = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)
    return old


def fit(model, objective, train_frames, validation_frames, settings, checkpoint_path, seed, inputs=None,
        more_settings=None):
    """Train ``model`` in place; returns the learning curve (DataFrame). Resumes from ``checkpoint_path``.

    settings: learning_rate, max_epochs, batch_frames, lr_patience, lr_factor,
    early_stopping_patience, gradient_clip, weight_average_decay. With a decay > 0 the model that is
    validated, kept and returned is the exponential moving average of the weights over the
    optimisation steps (Polyak averaging): each step's gradient is dominated by the noise of the
    instantaneous forces, and averaging the iterates removes the scatter that noise leaves in the
    weights. The checkpoint is resumed only if it was made with
    these settings, seed, network and objective, the same ``inputs`` (name -> data file) and
    ``more_settings`` (anything else that shaped the frames; see :mod:`thermocg.checkpoints`).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["learning_rate"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=settings["lr_factor"], patience=settings["lr_patience"]
    )
    state = {"epoch": 0, "best_loss": float("inf"), "best_state": None, "stale": 0, "curve": [], "average": None}
    decay = settings["weight_average_decay"]
    fingerprint = checkpoints.fingerprint(
        {"training": settings, "seed": seed, "network": model.config, "objective": vars(objective),
         **(more_settings or {})},
        inputs,
    )
    saved = checkpoints.load(checkpoint_path, fingerprint)
    if saved is not None:
        # map_location: a retry may run on another kind of node (GPU checkpoint, CPU node)
        saved = torch.load(saved, map_location=next(model.parameters()).device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log.info("resumed training from %s at epoch %d", checkpoint_path, state["epoch"])

    batch = settings["batch_frames"]
    while state["epoch"] < settings["max_epochs"] and state["stale"] < settings["early_stopping_patience"]:
        epoch, started = state["epoch"], time.perf_counter()
        order = np.random.default_rng([seed, epoch]).permutation(len(train_frames))
        model.train()
        train_terms = {}
        for start in range(0, len(order), batch):
            chunk = [train_frames[k] for k in order[start : start + batch]]
            terms = objective(model, chunk, epoch)
            optimizer.zero_grad()
            sum(terms.values()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["gradient_clip"])
            optimizer.step()
            if decay > 0:
                state["average"] = _moving_average(state["average"], model, decay)
            for name, value in terms.items():
                train_terms[name] = train_terms.get(name, 0.0) + float(value.detach()) * len(chunk)
        model.eval()
        iterate = _swap_in(model, state["average"])
        validation = _evaluate(objective, model, validation_frames, epoch, batch)
        validation_loss = sum(validation.values())
        scheduler.step(validation_loss)
        improved = validation_loss < state["best_loss"]
        if improved:
            state["best_loss"], state["stale"] = validation_loss, 0
            state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        _swap_in(model, iterate)
        row = {"epoch": epoch, "learning_rate": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
        row.update({f"train_{k}": v / len(train_frames) for k, v in train_terms.items()})
        row.update({f"validation_{k}": v for k, v in validation.items()})
        row["validation_total"] = validation_loss
        state["curve"].append(row)
        state["epoch"] = epoch + 1
        log.info(
            "epoch %d: train %s | validation %.4g%s, lr %.2g, %.1f s (%.1f frames/s)",
            epoch, " ".join(f"{k}={v / len(train_frames):.4g}" for k, v in train_terms.items()), validation_loss,
            " *" if improved else "", row["learning_rate"], row["seconds"], len(train_frames) / row["seconds"],
        )
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "state": state}
        checkpoints.save(checkpoint_path, fingerprint, lambda handle: torch.save(payload, handle))
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    reason = "early stopping" if state["stale"] >= settings["early_stopping_patience"] else "max_epochs"
    log.info("stopped after %d epochs (%s); best validation loss %.4g", state["epoch"], reason, state["best_loss"])
    return pd.DataFrame(state["curve"])


def build_model(kind, config, spec=None):
    """A fresh CGModel with the heads of ``kind``, the config's network settings and, for trf1
    and trf2 with ``response: radial``, radial pair heads W1 and W2 (``spec``'s n_basis, r_min)."""
    network = config["network"]
    spec = spec or {}
    radial = kind in RESPONSE_KINDS and spec.get("response") == "radial"
    pair_heads = [head for head in ("W1", "W2") if radial and head in HEADS[kind]]
    return nn.CGModel(
        n_features=network["n_features"],
        n_sensitivities=network["n_sensitivities"],
        n_interaction_layers=network["n_interaction_layers"],
        n_dense_layers=network["n_dense_layers"],
        cutoff=network["cutoff"],
        angular_order=network["angular_order"],
        sensitivity_soft_min=network["sensitivity_soft_min"],
        sensitivity_soft_max=network["sensitivity_soft_max"],
        heads=HEADS[kind],
        head_scales={h: network["head_scales"][h] for h in HEADS[kind] if h in network["head_scales"]},
        pair_heads=pair_heads,
        pair_basis={"n_basis": spec["n_basis"], "r_min": spec["r_min"]} if pair_heads else None,
        prior=network["prior"],
        dtype=network["dtype"],
        energy_matching_beta0=float(units.beta(config["reference_temperature"])) if kind == "em" else None,
        expansion=spec.get("expansion", "beta"),
        reference_beta=float(units.beta(config["reference_temperature"])),
    )


def _prepare(name, spec, config, beads, energies, threads, temperature, w0_model, load=True):
    """A fresh model of the entry's kind and its training and validation frames (none with ``load``
    false); for the kinds on a shared W0, that W0 copied in and frozen. Returns (model, sets, used
    files, training temperatures)."""
    kind, training = spec["kind"], config["training"]
    torch.manual_seed(config["seed"])
    torch.set_num_threads(threads)
    nn.tune_cpu_allocator()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log.info("model %s (%s): training on %s with %d CPU threads", name, kind, device, threads)
    model = build_model(kind, config, spec).to(device)
    dtype = next(model.parameters()).dtype
    beta0 = float(units.beta(config["reference_temperature"]))
    temperatures = training_temperatures(spec, config, temperature)
    r_loc = spec.get("r_loc") if spec.get("estimator", "local") == "local" and kind in RESPONSE_KINDS else None
    sets = {"train": [], "validation": []}
    used_files = {}
    for t in temperatures:
        label = temperature_label(t)
        energy_file = energies[label] if kind in NEEDS_ENERGIES else None
        used_files[f"beads T{label}"] = beads[label]
        if energy_file:
            used_files[f"energies T{label}"] = energy_file
        if not load:
            continue
        n_frames = len(io.load_frames(beads[label])["time"])
        stride = training["response_frame_stride"] if kind in SHARED_W0 else training["frame_stride"]
        split = split_indices(n_frames, training["validation_fraction"], training["test_fraction"], stride)
        for part in sets:
            sets[part] += load_frames(beads[label], split[part], model.cutoff, beta0, dtype, device, energy_file, r_loc)
    if load:
        log.info("%d training and %d validation frames from %s K", len(sets["train"]), len(sets["validation"]), temperatures)
    if kind in SHARED_W0:
        if w0_model is None:
            raise ValueError(f"model {name}: kind {kind} is fitted on a force-matched W0; give w0_model (the fm_ref model file)")
        base, base_metadata = nn.load_model(w0_model, device)
        base_data = [v for k, v in used_files.items() if k.startswith("beads")]
        if base_metadata.get("data_sha256") != checkpoints.file_hash(base_data):
            raise ValueError(f"model {name}: the W0 model {w0_model} was trained on other frames than {base_data}")
        response.share_w0(model, base)
        used_files["W0 model"] = w0_model
    return model, sets, used_files, temperatures


def response_fingerprint(spec, config, used_files):
    """What the thermal terms' normal equations of a response entry depend on: the entry's response
    settings (all but its kind), the frames it takes and the files (beads, energies, W0)."""
    training = config["training"]
    return {
        "response": {key: value for key, value in spec.items() if key != "kind"},
        "frames": {key: training[key] for key in ("response_frame_stride", "validation_fraction", "test_fraction")},
        "inputs_sha256": checkpoints.file_hash(used_files.values()),
    }


def build_response_systems(name, spec, config, beads, energies, w0_model, path, threads=1):
    """The normal equations of a trf1 or trf2 entry's thermal terms (thermocg.response.thermal_systems),
    saved to ``path`` for every entry that differs from it only in its kind (trf1 takes W1's of a
    trf2 entry's): the per-frame basis forces are nearly all of a closed-form fit's cost."""
    if spec["kind"] not in RESPONSE_KINDS:
        raise ValueError(f"model {name}: kind {spec['kind']} has no thermal response terms")
    model, sets, used_files, _ = _prepare(name, spec, config, beads, energies, threads, None, w0_model)
    systems = response.thermal_systems(model, spec.get("estimator", "local"), sets["train"] + sets["validation"])
    response.save_systems(path, systems, response_fingerprint(spec, config, used_files))
    return systems


def train_model(name, spec, config, beads, energies, model_path, curve_path, checkpoint_path, threads=1, temperature=None,
                w0_model=None, response_systems=None):
    """Fit one model entry of the config and save it with its metadata and learning curve.

    ``beads`` and ``energies`` map temperature labels (as in the file names) to the CG frame and
    per-molecule energy files; ``temperature`` is the oracle's temperature; ``w0_model`` the
    force-matched model of the same frames whose W0 em, trf1 and trf2 share (thermocg.response);
    ``response_systems`` (trf1, trf2): a file of :func:`build_response_systems` to fit the thermal
    terms from instead of building their normal equations here.
    """
    kind, training = spec["kind"], config["training"]
    # fitted from a file of normal equations, the model needs no frames (the file's fingerprint names them)
    model, sets, used_files, temperatures = _prepare(name, spec, config, beads, energies, threads, temperature, w0_model,
                                                     load=response_systems is None)
    beta0 = float(units.beta(config["reference_temperature"]))
    if kind in SHARED_W0:
        # the training and validation frames, in time order: the ridges are chosen by cross-validation
        if response_systems is not None:
            systems = response.load_systems(response_systems, response_fingerprint(spec, config, used_files))
        else:
            systems = response.thermal_systems(model, spec.get("estimator", "local"), sets["train"] + sets["validation"])
        rows = response.solve_thermal_terms(model, systems)
        curve = pd.DataFrame(rows)
        curve_comment = (f"closed-form fit of {name} ({kind}) on the W0 of {w0_model}: one row per ridge candidate "
                         "(relative_ridge inf = no term); mean squared errors of the targets, cross-validation chooses")
    else:
        curve = fit(model, Objective(kind), sets["train"], sets["validation"], training, checkpoint_path, config["seed"],
                    inputs=used_files, more_settings={"spec": spec, "T0_K": config["reference_temperature"]})
        curve_comment = f"learning curve of {name} ({kind}); losses are relative MSEs"

    metadata = {
        "name": name, "kind": kind, "spec": spec, "T0_K": config["reference_temperature"], "beta0_mol_per_kJ": beta0,
        "trained_at_K": temperatures, "cutoff_nm": model.cutoff, "network": config["network"], "training": training,
        "data_sha256": checkpoints.file_hash([v for k, v in used_files.items() if k.startswith("beads")]),
        "inputs_sha256": checkpoints.file_hash(used_files.values()), "units": {"energy": "kJ/mol", "length": "nm", "dbeta": "mol/kJ"},
    }
    nn.save_model(model_path, model.cpu(), metadata)
    io.write_table(curve_path, curve, comment=curve_comment)
    Path(checkpoint_path).unlink(missing_ok=True)  # outputs written: a rerun (-R) must train again
    return model, curve
