"""Held-out thermal response score (thermocg.metrics, METHOD.md "Judging a thermal response").

Known answer on the synthetic system of test_targets.py (u(r, s) = a(r) + b(r) s^2 / 2, sampled
exactly, so F_b(r) is known): E[score] = |F_b|^2 - |F_b - F_b,model|^2, i.e. |F_b|^2 for the true
F_b, 0 for zero, -3 |F_b|^2 for -F_b and 3/4 |F_b|^2 for F_b / 2.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from test_targets import mean_force, response, sample
from thermocg import io, metrics, nn, pair, targets, units
from thermocg.train import split_indices

N_FRAMES, N_BEADS, SPACING = 4000, 32, 0.4  # nm between beads on a periodic chain


def chain(n_frames):
    """Beads on a line along x, SPACING apart, periodic: within r_loc = 0.5 nm each bead sees I +- 1."""
    positions = np.zeros((n_frames, N_BEADS, 3))
    positions[:, :, 0] = SPACING * np.arange(N_BEADS)
    box = np.tile([SPACING * N_BEADS, 3.0, 3.0], (n_frames, 1))
    return positions, box


@pytest.fixture(scope="module")
def synthetic():
    """One independent synthetic system per bead; y1 from metrics.response_targets on the chain."""
    r, f, u = sample((N_FRAMES, N_BEADS), seed=5)
    positions, box = chain(N_FRAMES)
    forces, exact_mean_forces = f[..., None].numpy(), mean_force(r)[..., None].numpy()
    y1 = metrics.response_targets(positions, forces, box, u.numpy(), exact_mean_forces)
    truth = response(r)[..., None].numpy()  # F_b (F, N, 1)
    return {"y1": y1, "truth": truth, "signal": float(np.mean(np.sum(truth**2, axis=-1))),
            "r": r, "f": f, "u": u}


def test_response_targets_are_the_local_target_with_a_constant_energy(synthetic):
    # The chain wraps round the box, so N(I) = {I - 1, I, I + 1} modulo N_BEADS, the ring of test_targets.
    ring = torch.arange(N_BEADS)
    pairs = (torch.cat([ring, ring]), torch.cat([(ring + 1) % N_BEADS, (ring - 1) % N_BEADS]))
    r, f, u = synthetic["r"], synthetic["f"], synthetic["u"]
    expected = targets.first_order_local_target(f[..., None], mean_force(r)[..., None], u, u.mean(), pairs)
    np.testing.assert_allclose(synthetic["y1"], expected.numpy(), rtol=1e-12, atol=1e-9)


def test_score_known_answers(synthetic):
    y1, truth, signal = synthetic["y1"], synthetic["truth"], synthetic["signal"]
    score, se, per_frame = metrics.response_score(y1, truth)
    assert per_frame.shape == (N_FRAMES,)
    assert se < 0.05 * signal  # precise enough for the checks below to mean something
    assert abs(score - signal) < 4 * se

    score, se, per_frame = metrics.response_score(y1, np.zeros_like(truth))
    assert score == 0.0 and se == 0.0 and np.all(per_frame == 0.0)

    score, se, _ = metrics.response_score(y1, -truth)
    assert abs(score - (-3 * signal)) < 4 * se


def test_true_response_ranks_above_half_of_it(synthetic):
    y1, truth, signal = synthetic["y1"], synthetic["truth"], synthetic["signal"]
    full, _, full_frames = metrics.response_score(y1, truth)
    half, half_se, half_frames = metrics.response_score(y1, truth / 2)
    assert abs(half - 0.75 * signal) < 4 * half_se
    # Same frames, so the gap (expected signal / 4) is judged by the SE of the per-frame differences.
    gap, gap_se = metrics.paired_score_difference(full_frames, half_frames)
    assert gap == pytest.approx(full - half) and gap > 5 * gap_se


def test_paired_difference_ranks_close_models_whose_scores_overlap(synthetic):
    """The truth and 0.8 of it: expected gap |F_b|^2 (1 - 0.96) = 0.04 signal. The y1 noise common to
    both cancels in the paired difference, whose SE is a fraction of either score's."""
    y1, truth, signal = synthetic["y1"], synthetic["truth"], synthetic["signal"]
    full, full_se, full_frames = metrics.response_score(y1, truth)
    close, close_se, close_frames = metrics.response_score(y1, 0.8 * truth)
    gap, gap_se = metrics.paired_score_difference(full_frames, close_frames)
    assert abs(gap - 0.04 * signal) < 4 * gap_se and gap > 3 * gap_se
    assert gap_se < 0.3 * min(full_se, close_se)


def test_score_standard_error_is_over_frames():
    # Per-frame scores 2 y1.P - |P|^2 with P = 1 on 2 beads x 1 component: frames give 1, 3, 5, 7.
    y1 = np.array([[[1.0], [1.0]], [[2.0], [2.0]], [[3.0], [3.0]], [[4.0], [4.0]]])
    score, se, per_frame = metrics.response_score(y1, 1.0)
    np.testing.assert_allclose(per_frame, [1.0, 3.0, 5.0, 7.0])
    assert score == pytest.approx(4.0)
    assert se == pytest.approx(np.std([1.0, 3.0, 5.0, 7.0], ddof=1) / 2)


def test_centring_model_prefers_the_oracle_at_t0():
    models = {"em": ("em model", {"kind": "em"}), "base": ("fm_ref model", {"kind": "fm_ref"})}
    oracles = {"280": "oracle 280", "300": "oracle 300"}
    assert metrics.centring_model(models, oracles, "oracle", 300) == ("oracle", "oracle 300")
    assert metrics.centring_model(models, {"280": "oracle 280"}, "oracle", 300) == ("base", "fm_ref model")
    assert metrics.centring_model({"em": models["em"]}, {}, None, 300) == ("", None)


def small_model(seed, heads):
    torch.manual_seed(seed)
    return nn.CGModel(n_features=8, n_sensitivities=4, n_interaction_layers=1, n_dense_layers=1, cutoff=0.5,
                      sensitivity_soft_min=0.2, sensitivity_soft_max=0.4, heads=heads,
                      head_scales={"W1": 100.0} if "W1" in heads else None, dtype="float64")


def test_frames_evaluated_together_give_each_frames_own_forces(monkeypatch):
    """model_forces puts several frames through the model at once: each frame's forces must be
    those of the frame alone, in another box too, across the boundary between two calls."""
    model = small_model(3, ["W0", "W1"])
    rng = np.random.default_rng(0)
    box = np.array([[1.2, 1.2, 1.2], [1.3, 1.1, 1.25], [1.2, 1.2, 1.2], [1.15, 1.3, 1.2], [1.4, 1.2, 1.1]])
    positions = rng.uniform(0.0, 1.0, size=(len(box), 30, 3)) * box[:, None, :]
    monkeypatch.setattr(metrics, "BEADS_PER_CALL", 60)  # two frames per call: calls of 2, 2 and 1
    together = metrics.model_forces(model, positions, box, -0.02)
    alone = np.concatenate([metrics.model_forces(model, positions[k:k + 1], box[k:k + 1], -0.02)
                            for k in range(len(box))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-10)
    assert np.abs(together).max() > 1.0  # the frames have pairs within the cutoff


def test_response_table_scores_against_the_centring_model(tmp_path):
    # Mapped forces equal to the T0 oracle's mean force make every y1 exactly zero, so each model
    # scores -mean |F_b,model|^2 and fm_ref (F_b = 0) scores 0: this checks which force centres y1,
    # and that the score is taken on the test frames with their own energies.
    rng = np.random.default_rng(0)
    n_frames, side = 10, 4  # box 1.24 nm, more than twice the cutoff
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * 0.31
    positions = grid + rng.normal(scale=0.03, size=(n_frames, len(grid), 3))
    box = np.full((n_frames, 3), side * 0.31)
    oracle = small_model(1, ("W0",))
    io.save_frames(tmp_path / "beads.npz", positions=positions, box=box, time=0.1 * np.arange(n_frames),
                   forces=metrics.model_forces(oracle, positions, box, 0.0), temperature=np.float64(300.0))
    io.save_frames(tmp_path / "energies.npz", bead_energies=rng.normal(-40.0, 5.0, size=(n_frames, len(grid))))
    models = {"fm_ref": (small_model(2, ("W0",)), {"kind": "fm_ref", "spec": {"kind": "fm_ref"}}),
              "trf1": (small_model(3, ("W0", "W1")), {"kind": "trf1", "spec": {"kind": "trf1", "estimator": "local"}})}
    split = {"validation_fraction": 0.2, "test_fraction": 0.3, "frame_stride": 1, "response_frame_stride": 1}
    table = metrics.response_table(models, {"300": oracle}, tmp_path / "beads.npz", 300, split,
                                   tmp_path / "energies.npz", "oracle")
    assert list(table.columns) == metrics.RESPONSE_COLUMNS
    rows = table.set_index("model")
    assert set(rows["centring_model"]) == {"oracle"} and set(rows["n_frames"]) == {3}
    assert rows.loc["fm_ref", "score"] == 0.0 and rows.loc["fm_ref", "score_se"] == 0.0
    test = metrics.test_indices(n_frames, split)
    fb = metrics.thermal_response(models["trf1"][0], positions[test], box[test])
    assert np.mean(np.sum(fb**2, axis=-1)) > 0
    assert rows.loc["trf1", "score"] == pytest.approx(-np.mean(np.sum(fb**2, axis=-1)), rel=1e-9)
    # fm_ref scores best here: trf1's gap below it is its own score's size
    assert rows.loc["fm_ref", "score_below_best"] == 0.0 and rows.loc["fm_ref", "score_below_best_se"] == 0.0
    assert rows.loc["trf1", "score_below_best"] == pytest.approx(-rows.loc["trf1", "score"], rel=1e-12)

    # An independent score run joins every one of its frames to the test frames (y1 = 0 there too).
    extra = grid + rng.normal(scale=0.03, size=(4, len(grid), 3))
    io.save_frames(tmp_path / "score_beads.npz", positions=extra, box=box[:4], time=0.1 * np.arange(4),
                   forces=metrics.model_forces(oracle, extra, box[:4], 0.0), temperature=np.float64(300.0))
    io.save_frames(tmp_path / "score_energies.npz", bead_energies=rng.normal(-40.0, 5.0, size=(4, len(grid))))
    with_run = metrics.response_table(models, {"300": oracle}, tmp_path / "beads.npz", 300, split,
                                      tmp_path / "energies.npz", "oracle",
                                      score_runs=[(tmp_path / "score_beads.npz", tmp_path / "score_energies.npz")])
    assert set(with_run["n_frames"]) == {3 + 4}
    fb_all = np.concatenate([fb, metrics.thermal_response(models["trf1"][0], extra, box[:4])])
    assert with_run.set_index("model").loc["trf1", "score"] == pytest.approx(-np.mean(np.sum(fb_all**2, axis=-1)),
                                                                              rel=1e-9)
    with pytest.raises(ValueError, match="frames"):  # a score run's energies must be its own
        metrics.response_table(models, {"300": oracle}, tmp_path / "beads.npz", 300, split,
                               tmp_path / "energies.npz", "oracle",
                               score_runs=[(tmp_path / "score_beads.npz", tmp_path / "energies.npz")])

    # Without an oracle at T0 the fm_ref model centres y1, and its own y1 is then not zero.
    table = metrics.response_table(models, {}, tmp_path / "beads.npz", 300, split, tmp_path / "energies.npz")
    assert set(table["centring_model"]) == {"fm_ref"}
    assert (table.set_index("model").loc["trf1", "score"] != rows.loc["trf1", "score"])
    # A per-bead energy file of another run (other frame count) is refused, not silently misaligned.
    io.save_frames(tmp_path / "short.npz", bead_energies=np.zeros((n_frames - 1, len(grid))))
    with pytest.raises(ValueError, match="frames"):
        metrics.response_table(models, {"300": oracle}, tmp_path / "beads.npz", 300, split,
                               tmp_path / "short.npz", "oracle")


def test_sweep_summary_ranks_combinations_by_their_paired_score_gap(tmp_path):
    # Two combinations scored on the same 40 frames: b's per-frame scores are a's minus 2 plus a
    # little independent noise, so its gap below a is about 2 with a standard error far below
    # either score's, whose frame-to-frame spread (shared by both) is large.
    from thermocg import sweep

    rng = np.random.default_rng(1)
    shared = rng.normal(10.0, 5.0, size=40)
    per_frame = {"a": shared, "b": shared - 2.0 + rng.normal(0.0, 0.1, size=40)}
    rows, scores = [], []
    for name, values in per_frame.items():
        rows.append(tmp_path / f"{name}.tsv")
        io.write_table(rows[-1], pd.DataFrame([{"name": name, "score": values.mean()}]))
        scores.append(tmp_path / f"{name}_scores.tsv")
        io.write_table(scores[-1], pd.DataFrame({"score": values}))
    table = sweep.summarize(rows, scores).set_index("name")
    assert table.loc["a", "score_below_best"] == 0.0 and table.loc["a", "score_below_best_se"] == 0.0
    gap, gap_se = metrics.paired_score_difference(per_frame["a"], per_frame["b"])
    assert table.loc["b", "score_below_best"] == pytest.approx(gap) and gap == pytest.approx(2.0, abs=0.1)
    assert table.loc["b", "score_below_best_se"] == pytest.approx(gap_se)
    own = metrics.score_columns({"b": per_frame["b"]})["b"]
    assert gap_se < 0.1 * own["score_se"]  # the shared spread cancels in the pair


def test_a_sweep_stride_whose_fit_would_see_the_scored_frames_is_refused(tmp_path):
    # 600 frames, the main split's test frames from 510 on; stride 17 puts a validation frame at 510
    from thermocg import sweep

    io.save_frames(tmp_path / "beads.npz", time=0.1 * np.arange(600))
    config = {"reference_temperature": 300, "training": {"validation_fraction": 0.15, "test_fraction": 0.15,
                                                         "frame_stride": 3, "response_frame_stride": 1}}
    point = {"order": 1, "estimator": "local", "r_loc": 0.5, "frame_stride": 17}
    with pytest.raises(ValueError, match="frame_stride 17 puts validation frames among the held-out test frames"):
        sweep.fit_point(point, config, tmp_path / "beads.npz", None, None, [], tmp_path / "m.pt", tmp_path / "c.tsv",
                        tmp_path / "s.pt")


@pytest.mark.parametrize("n_frames", [40, 301, 600])
@pytest.mark.parametrize("stride", [1, 3, 7])
def test_test_frames_come_after_every_frame_any_fit_saw(n_frames, stride):
    training = {"validation_fraction": 0.15, "test_fraction": 0.15, "frame_stride": stride, "response_frame_stride": 1}
    test = metrics.test_indices(n_frames, training)
    seen = [split_indices(n_frames, 0.15, 0.15, s)[part] for s in (stride, 1) for part in ("train", "validation")]
    assert len(test) > 0 and test.min() > max(part.max() for part in seen)


class HarmonicPair(pair.PairPotential):
    """u(r; dbeta) = k (r - 0.5)^2 / 2 + dbeta c r^2 / 2: pair force -k (r - 0.5), dF/dbeta = -c r."""

    def __init__(self, c):
        super().__init__(cutoff=1.2)
        self.k, self.c = 100.0, c
        self.dtype_reference = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))  # metrics reads the dtype

    def pair_energy(self, r, dbeta):
        return 0.5 * self.k * (r - 0.5) ** 2 + 0.5 * dbeta * self.c * r**2


def two_bead_frames(path, potential, temperature, n_frames, noise, seed):
    """Two beads at random separations in 0.25-0.85 nm (box 3 nm); forces = the pair force + noise."""
    rng = np.random.default_rng(seed)
    separation = rng.uniform(0.25, 0.85, n_frames)
    direction = rng.normal(size=(n_frames, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    positions = np.stack([np.full((n_frames, 3), 1.0), 1.0 + separation[:, None] * direction], axis=1)
    box = np.full((n_frames, 3), 3.0)
    dbeta = float(units.beta(temperature) - units.beta(300.0))
    forces = metrics.model_forces(potential, positions, box, dbeta) + rng.normal(scale=noise, size=positions.shape)
    io.save_frames(path, positions=positions, forces=forces, box=box, time=np.arange(n_frames) * 0.1,
                   temperature=np.float64(temperature))
    return separation, forces


def test_pair_projected_force_of_two_beads_is_the_pair_force(tmp_path):
    potential = HarmonicPair(c=0.0)
    separation, forces = two_bead_frames(tmp_path / "b.npz", potential, 300.0, 200, 0.0, seed=1)
    beads = io.load_frames(tmp_path / "b.npz")
    edges = np.array([0.2, 0.5, 0.9])
    profile = metrics.pair_projected_forces(beads["positions"], beads["forces"], beads["box"], edges)
    pair_force = -potential.k * (separation - 0.5)  # > 0 pushes apart
    for b in range(2):
        inside = (separation >= edges[b]) & (separation < edges[b + 1])
        assert np.nanmean(profile[:, b]) == pytest.approx(pair_force[inside].mean(), rel=1e-9)
        assert np.isnan(profile[~inside, b]).all()  # a frame without a pair in a bin has no value there


def test_radial_response_known_answer(tmp_path):
    # FG forces: the pair force of u(r; beta) with dF/dbeta = -c r along the pair, plus noise. The
    # true model's difference to FG is zero within its standard errors; a model without the
    # thermal term (c = 0) misses the whole response, so its difference is +c r (FG's noise aside).
    truth_potential = HarmonicPair(c=40.0)
    for temperature, seed in ((250.0, 2), (450.0, 3)):
        two_bead_frames(tmp_path / f"T{temperature:g}.npz", truth_potential, temperature, 4000, 20.0, seed)
    models = {"true": (truth_potential, {"kind": "trf1", "trained_at_K": [300.0]}),
              "no_response": (HarmonicPair(c=0.0), {"kind": "fm_ref", "trained_at_K": [300.0]})}
    table = metrics.radial_response(models, tmp_path / "T250.npz", tmp_path / "T450.npz", 250.0, 450.0,
                                    float(units.beta(300.0)))
    rows = {name: rows for name, rows in table.groupby("model")}
    inside = (rows["FG"]["r_nm"] > 0.26) & (rows["FG"]["r_nm"] < 0.84)
    fg, true, none = (rows[name][inside.values] for name in ("FG", "true", "no_response"))
    r = fg["r_nm"].to_numpy()
    # the truth's own response is -c r within a few of its standard errors
    assert np.all(np.abs(fg["response"] + 40.0 * r) < 4 * fg["error_se"] + 0.5)
    assert np.all(np.abs(true["error"]) < 4 * true["error_se"])  # only FG's noise
    assert np.all(np.abs(none["error"] - 40.0 * r) < 4 * none["error_se"] + 0.5)
    assert (none["error_se"] > 0).all()
    summary = metrics.radial_summary(table).set_index("model")
    assert summary.loc["true", "radial_rmse"] < 2 * summary.loc["true", "radial_rmse_noise"]
    assert summary.loc["no_response", "radial_rmse"] > 2 * summary.loc["no_response", "radial_rmse_noise"]
