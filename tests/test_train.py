"""Training: splits, learning a known force field, determinism, resume after a kill."""

import logging

import numpy as np
import pytest
import torch

from thermocg import checkpoints
from thermocg import config as configuration
from thermocg import io, nn, train, units
from thermocg.neighbors import NeighborList
from conftest import REPO

N_BEADS, LENGTH, MIN_DISTANCE = 48, 1.4, 0.22  # nm


def soft_pair_forces(positions, length, strength=50.0, sigma=0.3):
    """Forces of u(r) = strength * exp(-(r/sigma)^2) summed over pairs (minimum image), kJ/(mol nm)."""
    d = positions[:, None, :] - positions[None, :, :]
    d -= length * np.round(d / length)
    r2 = (d**2).sum(-1)
    np.fill_diagonal(r2, np.inf)
    magnitude = 2 * strength / sigma**2 * np.exp(-r2 / sigma**2)  # -du/dr / r
    return (magnitude[..., None] * d).sum(axis=1)


def spread_beads(rng, n_beads, length, min_distance):
    """Uniform random beads no closer than ``min_distance`` (random sequential addition, minimum image).

    Closer pairs than the sensitivities' range (from 0.22 nm) would carry forces that no CG network
    of this size can represent, and liquid configurations have none."""
    placed = []
    while len(placed) < n_beads:
        trial = rng.uniform(0, length, 3)
        d = np.asarray(placed).reshape(-1, 3) - trial
        d -= length * np.round(d / length)
        if not placed or np.sqrt((d**2).sum(-1)).min() >= min_distance:
            placed.append(trial)
    return np.asarray(placed)


@pytest.fixture(scope="module")
def synthetic_beads(tmp_path_factory):
    """Frames of random beads whose 'mapped' forces come from a known pair potential, plus noise."""
    rng = np.random.default_rng(0)
    n_frames = 40
    positions = np.stack([spread_beads(rng, N_BEADS, LENGTH, MIN_DISTANCE) for _ in range(n_frames)])
    clean = np.stack([soft_pair_forces(p, LENGTH) for p in positions])
    noisy = clean + rng.normal(scale=0.2 * clean.std(), size=clean.shape)
    path = tmp_path_factory.mktemp("beads") / "beads.npz"
    io.save_frames(
        path, positions=positions, forces=noisy, potential_energy=rng.normal(size=n_frames), box=np.full((n_frames, 3), LENGTH),
        time=np.arange(n_frames) * 0.1, masses=np.full(N_BEADS, 18.015), temperature=np.float64(300.0),
    )
    return path, clean


def small_config(**training):
    config = configuration.load(REPO / "config" / "test.yaml")
    config["network"].update(n_features=8, n_sensitivities=8, cutoff=0.6, prior=None)
    config["training"].update(frame_stride=1, max_epochs=60, batch_frames=4, learning_rate=1e-2,
                              early_stopping_patience=60, threads=1)
    config["training"].update(training)
    return config


def test_split_is_time_ordered_and_disjoint():
    split = train.split_indices(100, 0.15, 0.15, stride=2)
    assert len(split["train"]) == 34 and len(split["validation"]) == 8 and len(split["test"]) == 8
    assert split["train"].max() < split["validation"].min() <= split["validation"].max() < split["test"].min()
    with pytest.raises(ValueError, match="too few"):
        train.split_indices(4, 0.4, 0.4, stride=2)


def test_force_matching_learns_a_known_pair_force(synthetic_beads, tmp_path):
    path, clean = synthetic_beads
    config = small_config()
    model, curve = train.train_model(
        "fm", {"kind": "fm_ref"}, config, beads={"300": path}, energies={},
        model_path=tmp_path / "m.pt", curve_path=tmp_path / "c.tsv", checkpoint_path=tmp_path / "s.pt",
    )
    # relative MSE of the noisy forces has a floor of 0.2^2 / (1 + 0.2^2) = 0.038
    assert curve["train_force"].iloc[-1] < 0.5 * curve["train_force"].iloc[0]
    assert curve["validation_force"].min() < 0.3
    loaded, metadata = nn.load_model(tmp_path / "m.pt")
    # against the known noise-free forces on the validation frames (a fit that had learned half the
    # force, or a mis-scaled one, would be at 0.25 or more; the noise alone is at 0.04)
    data = io.load_frames(path)
    training = config["training"]
    validation = train.split_indices(len(data["positions"]), training["validation_fraction"],
                                     training["test_fraction"], training["frame_stride"])["validation"]
    neighbors, box = NeighborList(loaded.cutoff), torch.full((3,), LENGTH, dtype=torch.float64)
    predicted = np.stack([nn.energy_and_forces(loaded, torch.as_tensor(data["positions"][k]),
                                               *neighbors(torch.as_tensor(data["positions"][k]), box), 0.0)[1].numpy()
                          for k in validation])
    relative_error = np.mean((predicted - clean[validation]) ** 2) / np.mean(clean[validation] ** 2)
    print(f"relative MSE against the noise-free forces: {relative_error:.4f}")
    assert relative_error < 0.1
    assert metadata["kind"] == "fm_ref" and metadata["T0_K"] == config["reference_temperature"]
    assert len(metadata["data_sha256"]) == 64 and metadata["units"]["energy"] == "kJ/mol"
    assert not (tmp_path / "s.pt").exists(), "the checkpoint is removed once the model is saved"
    assert io.read_table(tmp_path / "c.tsv").shape[0] == len(curve)


def fit_once(path, directory, objective=None, max_epochs=6, **changes):
    config = small_config(max_epochs=max_epochs)
    config["training"].update({k: v for k, v in changes.items() if k in config["training"]})
    config["network"].update({k: v for k, v in changes.items() if k in config["network"]})
    torch.manual_seed(config["seed"])
    model = train.build_model("fm_ref", config)
    frames = train.load_frames(path, range(32), model.cutoff, float(units.beta(300.0)), torch.float32, "cpu")
    objective = objective or train.Objective("fm_ref")
    curve = train.fit(model, objective, frames[:24], frames[24:], config["training"], directory / "state.pt", seed=1)
    return model, curve


def test_same_seed_same_weights(synthetic_beads, tmp_path):
    path, _ = synthetic_beads
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, _ = fit_once(path, tmp_path / "a")
    second, _ = fit_once(path, tmp_path / "b")
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


class Killed(Exception):
    pass


class DyingObjective(train.Objective):
    def __call__(self, model, frames, epoch, create_graph=True):
        if epoch == 3:
            raise Killed
        return super().__call__(model, frames, epoch, create_graph)


@pytest.mark.parametrize("decay", [0.0, 0.9])
def test_killed_training_resumes_where_it_stopped(synthetic_beads, tmp_path, decay):
    path, _ = synthetic_beads
    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir()
    reference, reference_curve = fit_once(path, tmp_path / "whole", weight_average_decay=decay)
    with pytest.raises(Killed):
        fit_once(path, tmp_path / "killed", DyingObjective("fm_ref"), weight_average_decay=decay)
    resumed, curve = fit_once(path, tmp_path / "killed", weight_average_decay=decay)
    assert len(curve) == len(reference_curve) == 6
    np.testing.assert_array_equal(curve["validation_total"], reference_curve["validation_total"])
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


class RecordingObjective(train.Objective):
    """Records the weights the model holds at each training step and at each validation."""

    def __init__(self):
        super().__init__("fm_ref")
        self.steps, self.validations = [], []

    def __call__(self, model, frames, epoch, create_graph=True):
        weights = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        (self.steps if create_graph else self.validations).append((epoch, weights))
        return super().__call__(model, frames, epoch, create_graph)


def test_weight_averaging_validates_and_keeps_the_moving_average_of_the_iterates(synthetic_beads, tmp_path):
    path, _ = synthetic_beads
    decay = 0.7
    recorder = RecordingObjective()
    model, curve = fit_once(path, tmp_path, recorder, max_epochs=2, weight_average_decay=decay,
                            early_stopping_patience=5, learning_rate=3e-2)
    # weights after step k = those the next step starts from; the first step of epoch 1 starts
    # from the last iterate of epoch 0, so the average was swapped out again after validating
    after_steps = [w for _, w in recorder.steps[1:]]
    steps_per_epoch = sum(1 for epoch, _ in recorder.steps if epoch == 0)
    average = after_steps[0]
    for w in after_steps[1:steps_per_epoch]:
        average = decay * average + (1 - decay) * w
    seen_by_validation = recorder.validations[0][1]
    torch.testing.assert_close(seen_by_validation, average)
    assert not torch.allclose(seen_by_validation, after_steps[steps_per_epoch - 1]), "the average is not the last iterate"
    best_epoch = int(curve["validation_total"].idxmin())
    kept = torch.cat([p.detach().flatten() for p in model.parameters()])
    last_batch = [w for epoch, w in recorder.validations if epoch == best_epoch][-1]
    assert torch.equal(kept, last_batch), "the model returned is the best epoch's average"


@pytest.mark.parametrize("change, why", [({"learning_rate": 3e-3}, "training.learning_rate 0.01 (now 0.003)"),
                                         ({"n_features": 6}, "network.n_features 8 (now 6)")])
def test_a_checkpoint_of_other_settings_is_set_aside(synthetic_beads, tmp_path, caplog, change, why):
    """A fit killed at epoch 3, then rerun with a changed setting: a fresh fit, not the old weights."""
    path, _ = synthetic_beads
    (tmp_path / "killed").mkdir(), (tmp_path / "fresh").mkdir()
    with pytest.raises(Killed):
        fit_once(path, tmp_path / "killed", DyingObjective("fm_ref"))
    caplog.set_level(logging.INFO)
    rerun, curve = fit_once(path, tmp_path / "killed", **change)
    assert "resumed" not in caplog.text
    [line] = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert str(tmp_path / "killed" / "state.pt") in line and why in line
    assert (tmp_path / "killed" / "state.pt.stale").exists() and len(curve) == 6
    fresh, _ = fit_once(path, tmp_path / "fresh", **change)
    for a, b in zip(rerun.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_a_damaged_training_checkpoint_is_reported_with_its_path(synthetic_beads, tmp_path):
    path, _ = synthetic_beads
    with pytest.raises(Killed):
        fit_once(path, tmp_path, DyingObjective("fm_ref"))
    state = tmp_path / "state.pt"
    data = bytearray(state.read_bytes())
    data[-200] ^= 0x01  # one bit inside the payload (tensor data or zip records)
    state.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=f"{state} is damaged.*delete it"):
        fit_once(path, tmp_path)


def test_same_config_and_seed_give_byte_identical_model_files(synthetic_beads, tmp_path):
    path, _ = synthetic_beads
    files = []
    for run in ("a", "b"):
        out = tmp_path / run
        train.train_model("fm", {"kind": "fm_ref"}, small_config(max_epochs=2), beads={"300": path}, energies={},
                          model_path=out / "model.pt", curve_path=out / "c.tsv", checkpoint_path=out / "s.pt")
        files.append((out / "model.pt").read_bytes())
    assert files[0] == files[1]


def test_mtfm_objective_matches_each_frame_with_its_own_temperatures_mean_force(synthetic_beads):
    # one gradient of W summed at per-bead dbeta = the heads' forces combined with each frame's coefficients
    path, _ = synthetic_beads
    data = io.load_frames(path)
    torch.manual_seed(0)
    model = nn.CGModel(n_features=8, n_sensitivities=8, cutoff=0.6, heads=("W0", "W1", "W2"), n_dense_layers=1,
                       expansion="reduced", reference_beta=units.beta(300.0), dtype="float64")
    for name in ("W1", "W2"):  # heads far from zero, so that a wrong coefficient shows
        with torch.no_grad():
            for p in model.heads[name].parameters():
                p.normal_(0.0, 1.0)
    neighbors = NeighborList(0.6)
    frames = []
    for k, dbeta in zip(range(3), (0.0, 0.08, -0.23)):
        positions = torch.as_tensor(data["positions"][k])
        frames.append(train.Frame(positions=positions, forces=torch.as_tensor(data["forces"][k]), energy=None,
                                  bead_energies=None, pairs=neighbors(positions, torch.full((3,), LENGTH, dtype=torch.float64)),
                                  local_pairs=None, dbeta=dbeta))
    loss = train.Objective("mtfm")(model, frames, epoch=0)["force"]
    predicted = []
    for frame in frames:
        heads = nn.head_forces(model, frame.positions, *frame.pairs, heads=("prior", "W0", "W1", "W2"))
        c1, c2 = model.expansion_coefficients(torch.tensor(frame.dbeta, dtype=torch.float64))
        predicted.append(heads["prior"] + heads["W0"] + c1 * heads["W1"] + c2 * heads["W2"])
    observed = torch.cat([f.forces for f in frames])
    expected = ((torch.cat(predicted) - observed) ** 2).mean() / (observed**2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0.0)


def test_unknown_kinds_and_closed_form_kinds_have_no_training_objective():
    with pytest.raises(ValueError, match="unknown model kind"):
        train.Objective("magic")
    with pytest.raises(ValueError, match="closed form"):
        train.Objective("trf1")


def test_trf1_and_trf2_fitted_from_shared_normal_equations_equal_their_own_fits_to_the_bit(synthetic_beads, tmp_path):
    """rule response_systems builds the closed-form terms' normal equations once for entries that
    differ only in their kind; fitting from that file must change no number, and a file built from
    other settings or another W0 must be refused, not used."""
    path, _ = synthetic_beads
    n_frames = len(io.load_frames(path)["time"])
    energies = tmp_path / "energies.npz"
    io.save_frames(energies, bead_energies=np.random.default_rng(3).normal(-40.0, 5.0, (n_frames, N_BEADS)))
    config = small_config(max_epochs=2)
    files = {"beads": {"300": path}, "energies": {"300": energies}}

    def fm_ref(name, seed):
        seeded = dict(config, seed=seed)
        train.train_model(name, {"kind": "fm_ref"}, seeded, **files, model_path=tmp_path / f"{name}.pt",
                          curve_path=tmp_path / f"{name}.tsv", checkpoint_path=tmp_path / f"{name}.ckpt")
        return tmp_path / f"{name}.pt"

    w0, other_w0 = fm_ref("fm_ref", 1), fm_ref("fm_ref_seed2", 2)
    settings = {"estimator": "local", "r_loc": 0.5, "response": "network", "expansion": "reduced"}
    systems = tmp_path / "systems.npz"
    train.build_response_systems("trf1", dict(settings, kind="trf2"), config, **files, w0_model=w0, path=systems)

    def fit(name, kind, shared=None, w0_model=w0, **changes):
        return train.train_model(name, dict(settings, kind=kind, **changes), config, **files,
                                 model_path=tmp_path / f"{name}.pt", curve_path=tmp_path / f"{name}.tsv",
                                 checkpoint_path=tmp_path / f"{name}.ckpt", w0_model=w0_model, response_systems=shared)

    for kind in ("trf1", "trf2"):
        own, own_curve = fit(f"{kind}_own", kind)
        shared, shared_curve = fit(f"{kind}_shared", kind, systems)
        assert own.state_dict().keys() == shared.state_dict().keys()
        assert all(torch.equal(value, shared.state_dict()[key]) for key, value in own.state_dict().items())
        assert io.read_table(tmp_path / f"{kind}_own.tsv").equals(io.read_table(tmp_path / f"{kind}_shared.tsv"))
        assert own.heads["e"].readouts[0].weight.abs().sum() > 0  # e was fitted, not left at its start
    assert "squared_residual" not in set(io.read_table(tmp_path / "trf1_shared.tsv")["head"])
    with pytest.raises(ValueError, match="other frames, W0 or response settings"):
        fit("trf1_r_loc", "trf1", systems, r_loc=0.45)
    with pytest.raises(ValueError, match="other frames, W0 or response settings"):
        fit("trf1_other_w0", "trf1", systems, w0_model=other_w0)
    first_order = tmp_path / "first_order.npz"
    train.build_response_systems("trf1", dict(settings, kind="trf1"), config, **files, w0_model=w0, path=first_order)
    with pytest.raises(ValueError, match="no normal equations for the W2 head"):
        fit("trf2_from_trf1", "trf2", first_order)
