"""Closed-form thermal terms on a shared W0 (thermocg.response) and how train uses them."""

import numpy as np
import pytest
import torch

from thermocg import kinds, nn, response, targets, train
from thermocg.neighbors import NeighborList

BOX = 2.0  # nm
N_BEADS = 200
CUTOFF = 0.6
R_LOC = 0.5
N_BASIS = 8


def small_model(heads, pair_heads=(), seed=0, **options):
    torch.manual_seed(seed)
    return nn.CGModel(n_features=8, n_sensitivities=4, n_dense_layers=1, cutoff=CUTOFF, heads=heads,
                      pair_heads=pair_heads, pair_basis={"n_basis": N_BASIS, "r_min": 0.2}, prior=None,
                      dtype="float64", **options)


def spread_positions(generator):
    """Beads on a jittered lattice: no pair closer than about 0.2 nm."""
    side = int(np.ceil(N_BEADS ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:N_BEADS]
    positions = (grid + 0.5) * (BOX / side) + generator.normal(0.0, 0.03, (N_BEADS, 3))
    return torch.as_tensor(positions % BOX)


def synthetic_frames(true_model, n_frames, seed, sigma=5.0):
    """Frames whose local y1 has conditional mean exactly the W1 force of ``true_model``.

    Mean force 0 (the W0 to share is zero), bead energies u_J = 3 + eps_J with eps iid N(0, sigma^2),
    and f_I = -G_I L_I / Var(L_I), L_I the local sum of eps over N(I) (n_I beads): then
    y1_I = -(f_I - 0) L_I has E[y1_I | R] = G_I, the W1 force.
    """
    generator = np.random.default_rng(seed)
    box = torch.full((3,), BOX, dtype=torch.float64)
    neighbors = NeighborList(CUTOFF)
    frames = []
    for _ in range(n_frames):
        positions = spread_positions(generator)
        pairs = neighbors(positions, box)
        local = targets.local_pairs(positions, box, R_LOC)[:2]
        response_force = nn.head_forces(true_model, positions, *pairs, heads=("W1",))["W1"]
        eps = torch.as_tensor(generator.normal(0.0, sigma, N_BEADS))
        local_sum = targets.local_energy_sum(eps, local)
        n_local = targets.local_energy_sum(torch.ones(N_BEADS, dtype=torch.float64), local)
        forces = -response_force * (local_sum / (n_local * sigma**2))[:, None]
        frames.append(train.Frame(positions=positions, forces=forces, energy=(3.0 + eps).sum(),
                                  bead_energies=3.0 + eps, pairs=pairs, local_pairs=local, dbeta=0.0))
    return frames


def radial_w1_truth():
    """A model whose radial W1 is known: the thermal response the synthetic frames carry."""
    model = small_model(["W0", "W1"], pair_heads=["W1"])
    with torch.no_grad():
        model.heads["W1"].coefficients.copy_(torch.tensor([0.0, 40.0, 60.0, 30.0, 10.0, -10.0, -5.0, 0.0]))
    return model


@pytest.fixture(scope="module")
def truth():
    return radial_w1_truth()


def zero_w0(model):
    with torch.no_grad():
        for readout in model.heads["W0"].readouts:
            readout.weight.zero_()
            readout.bias.zero_()
    return model


def test_radial_w1_is_recovered_from_noisy_local_targets(truth):
    frames = synthetic_frames(truth, 30, seed=1) + synthetic_frames(truth, 20, seed=2)
    model = zero_w0(small_model(["W0", "W1", "e"], pair_heads=["W1"]))
    rows = response.fit_thermal_terms(model, "local", frames)
    fitted, exact = model.heads["W1"].coefficients.detach(), truth.heads["W1"].coefficients.detach()
    # the spline profile, where pairs were sampled (0.25-0.55 nm), within 15% of its peak
    r = torch.linspace(0.25, 0.55, 31, dtype=torch.float64)
    profile_fit = model.heads["W1"].basis(r) @ fitted
    profile_true = truth.heads["W1"].basis(r) @ exact
    assert (profile_fit - profile_true).abs().max() < 0.15 * profile_true.abs().max()
    chosen = [row for row in rows if row["head"] == "W1" and row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["relative_ridge"] != float("inf")
    # e: the constant 3 kJ/mol per bead, from the frozen trunk's features
    energies = model.per_bead_energies(frames[-1].positions, *frames[-1].pairs)
    assert torch.allclose(energies["e"], torch.full_like(energies["e"], 3.0), atol=0.5)


def test_network_w1_is_recovered_from_noisy_local_targets():
    # A read-out of the frozen trunk (response: network). Its constant has no force; the fit must
    # still try every ridge (it once found every candidate singular and always chose no term).
    truth = small_model(["W0", "W1"], seed=3)
    response.set_coefficients(truth, "W1", np.random.default_rng(7).normal(0.0, 30.0, 9))
    frames = synthetic_frames(truth, 30, seed=1) + synthetic_frames(truth, 20, seed=2)
    model = zero_w0(small_model(["W0", "W1", "e"], seed=3))  # the same trunk as the truth's
    rows = response.fit_thermal_terms(model, "local", frames)
    w1_rows = [row for row in rows if row["head"] == "W1"]
    assert len(w1_rows) == len(response.RELATIVE_RIDGES) + 1
    assert [row["relative_ridge"] for row in w1_rows if row["chosen"]] != [float("inf")]
    frame = frames[-1]
    fitted, exact = (nn.head_forces(m, frame.positions, *frame.pairs, heads=("W1",))["W1"] for m in (model, truth))
    assert float((fitted - exact).norm() / exact.norm()) < 0.15


def test_a_term_the_data_cannot_determine_comes_out_as_zero(truth):
    # pure noise: no response at all, targets still noisy
    silent = small_model(["W0", "W1"], pair_heads=["W1"])
    frames = synthetic_frames(silent, 10, seed=3) + synthetic_frames(silent, 10, seed=4)
    for frame in frames:
        frame.forces = torch.as_tensor(np.random.default_rng(5).normal(0.0, 50.0, (N_BEADS, 3)))
    model = zero_w0(small_model(["W0", "W1", "e"], pair_heads=["W1"]))
    response.fit_thermal_terms(model, "local", frames)
    assert torch.all(model.heads["W1"].coefficients == 0)


def test_reduced_trf2_without_a_determined_curvature_is_trf1(truth):
    # The synthetic y2 is noise far above any curvature, so the reduced fit of W2 + 2 W1 / beta0
    # finds no term: W2 = -2 W1 / beta0 (beta W without curvature), and trf2's forces are trf1's at
    # every temperature (with the beta series, "no term" would instead mean W2 = 0).
    beta0 = 0.4
    frames = synthetic_frames(truth, 30, seed=1) + synthetic_frames(truth, 20, seed=2)
    fitted = {}
    for kind, heads in (("trf1", ["W0", "W1", "e"]), ("trf2", ["W0", "W1", "W2", "e"])):
        fitted[kind] = zero_w0(small_model(heads, pair_heads=[h for h in heads if h in ("W1", "W2")],
                                           expansion="reduced", reference_beta=beta0))
        rows = response.fit_thermal_terms(fitted[kind], "local", frames)
    assert any(row["head"] == "squared_residual" and row["chosen"] for row in rows)
    w1, w2 = (fitted["trf2"].heads[h].coefficients.detach() for h in ("W1", "W2"))
    assert w1.abs().max() > 0
    torch.testing.assert_close(w2, -2.0 / beta0 * w1)
    frame = frames[-1]
    for dbeta in (-0.23, 0.08):
        forces = [nn.energy_and_forces(fitted[k], frame.positions, *frame.pairs, dbeta)[1] for k in ("trf1", "trf2")]
        torch.testing.assert_close(forces[1], forces[0])


def noisy_linear_system(signal, n_frames=40, seed=0):
    rng = np.random.default_rng(seed)
    equations = response.NormalEquations()
    for _ in range(n_frames):
        design = rng.normal(size=(50, 3))
        equations.add(design, design @ np.array([signal, -signal, 0.0]) + rng.normal(0, 1.0, 50))
    return equations


def test_ridge_choice_keeps_a_strong_signal_and_drops_noise():
    for signal, kept in ((5.0, True), (0.0, False)):
        coefficients, rows = response.solve_ridge(noisy_linear_system(signal), np.eye(3))
        assert bool(np.any(coefficients != 0)) == kept
        assert sum(row["chosen"] for row in rows) == 1
        if kept:
            assert np.allclose(coefficients, [signal, -signal, 0.0], atol=0.1)


def test_a_kept_term_takes_the_ridge_with_the_least_cross_validated_error():
    # a weak signal: a ridge 10x the best lies within a standard error of it (the one-standard-error
    # rule would take it) and would shrink the term
    for seed in (1, 2):
        coefficients, rows = response.solve_ridge(noisy_linear_system(0.1, n_frames=40, seed=seed), np.eye(3))
        chosen = next(row for row in rows if row["chosen"])
        assert np.isfinite(chosen["relative_ridge"]), "a 0.1 signal in 40 x 50 samples of unit noise is kept"
        assert chosen["cross_validation_mse"] == min(row["cross_validation_mse"] for row in rows)


@pytest.mark.parametrize("gap", [0, 2])
def test_cross_validation_scores_every_frame_with_a_fit_that_did_not_see_it(gap):
    """... nor the ``gap`` frames on each side of its stretch."""
    system = noisy_linear_system(0.3, n_frames=23, seed=1)
    penalty = response.smoothness_penalty(3)
    coefficients, rows = response.solve_ridge(system, penalty, n_folds=4, gap_frames=gap)
    gram, rhs = system.gram, system.rhs
    scale = np.trace(gram) / 3
    for row in rows:
        ridge = row["relative_ridge"]
        errors = []
        for fold in np.array_split(np.arange(23), 4):  # stretches of consecutive frames
            rest = [k for k in range(23) if not fold[0] - gap <= k <= fold[-1] + gap]
            assert len(rest) == 23 - len(fold) - (gap if fold[0] == 0 or fold[-1] == 22 else 2 * gap)
            fit = (np.zeros(3) if np.isinf(ridge) else
                   np.linalg.solve(sum(system.frames[k][0] for k in rest) + ridge * scale * penalty,
                                   sum(system.frames[k][1] for k in rest)))
            errors += [(fit @ g @ fit - 2 * fit @ b + y2) / m for g, b, y2, m in (system.frames[k] for k in fold)]
        assert row["cross_validation_mse"] == pytest.approx(np.mean(errors), rel=1e-10)
    chosen = next(row for row in rows if row["chosen"])
    assert np.isfinite(chosen["relative_ridge"]), "a 0.3 signal in 23 x 50 samples of unit noise is kept"
    # the chosen ridge is then fitted on every frame
    expected = np.linalg.solve(gram + chosen["relative_ridge"] * scale * penalty, rhs)
    np.testing.assert_allclose(coefficients, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="at least 5 frames, got 3"):
        response.solve_ridge(noisy_linear_system(1.0, n_frames=3), penalty)


def test_thermal_pair_heads_start_at_zero_so_the_model_starts_as_its_w0():
    model = small_model(["W0", "W1", "W2"], pair_heads=["W1", "W2"])
    positions = spread_positions(np.random.default_rng(0))
    pairs = NeighborList(CUTOFF)(positions, torch.full((3,), BOX, dtype=torch.float64))
    at_t0 = nn.energy_and_forces(model, positions, *pairs, 0.0)
    far = nn.energy_and_forces(model, positions, *pairs, -0.23)
    assert all(bool((model.heads[name].coefficients == 0).all()) for name in ("W1", "W2"))
    assert torch.equal(at_t0[0], far[0]) and torch.equal(at_t0[1], far[1])


def test_pair_head_energy_from_four_coefficients_per_pair_equals_its_basis_expansion():
    # PairHead's forward (MD, DiffSim) and its basis (the closed-form fits) are one function
    model = small_model(["W0", "W1"], pair_heads=["W1"])
    head = model.heads["W1"]
    with torch.no_grad():
        head.coefficients.copy_(torch.as_tensor(np.random.default_rng(3).normal(size=head.n_basis)))
    positions = spread_positions(np.random.default_rng(0)).requires_grad_(True)
    pairs = NeighborList(CUTOFF)(positions, torch.full((3,), BOX, dtype=torch.float64))
    geometry = model.pair_geometry(positions, *pairs, positions.dtype)
    energies = head([], geometry)
    expected = head.basis_per_bead(geometry) @ head.coefficients
    torch.testing.assert_close(energies, expected, rtol=1e-12, atol=1e-12)
    forces, expected_forces = (torch.autograd.grad(e.sum(), positions, retain_graph=True)[0] for e in (energies, expected))
    torch.testing.assert_close(forces, expected_forces, rtol=1e-12, atol=1e-12)
    assert forces.abs().max() > 0


def test_shared_w0_is_identical_and_frozen(truth):
    base = small_model(["W0"], seed=11)
    model = small_model(["W0", "W1", "W2", "e"], pair_heads=["W1", "W2"], seed=12)
    response.share_w0(model, base)
    for name, value in base.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)
    assert not any(p.requires_grad for name, p in model.named_parameters() if name.startswith(("trunks.", "heads.W0.")))
    frames = synthetic_frames(truth, 4, seed=6) + synthetic_frames(truth, 4, seed=7)
    response.fit_thermal_terms(model, "local", frames)
    frame = frames[-1]
    expected = nn.energy_and_forces(base, frame.positions, *frame.pairs, 0.0)[1]
    assert torch.equal(nn.energy_and_forces(model, frame.positions, *frame.pairs, 0.0)[1], expected)
    other = small_model(["W0", "W1"], pair_heads=["W1"])
    wide = nn.CGModel(n_features=16, n_sensitivities=4, n_dense_layers=1, cutoff=CUTOFF, heads=["W0"], prior=None)
    with pytest.raises(ValueError, match="network differs"):
        response.share_w0(other, wide)


@pytest.mark.parametrize("kind", sorted(kinds.SAME_AS_FM_REF_AT_T0 - {"fm_oracle"}))
@pytest.mark.parametrize("expansion", ["beta", "reduced"])
def test_models_on_fm_refs_w0_have_its_forces_at_t0_to_the_bit(kind, expansion):
    """The premise on which the pipeline runs CG MD at T0 once for them and fm_ref (t0_twin):
    at dbeta = 0 their thermal terms, however large, add exact zeros."""
    beta0 = 0.4  # mol/kJ
    base = small_model(["W0"], seed=11)
    options = {"expansion": expansion, "reference_beta": beta0, "energy_matching_beta0": beta0 if kind == "em" else None}
    model = small_model(kinds.HEADS[kind], pair_heads=[h for h in ("W1", "W2") if h in kinds.HEADS[kind]], seed=12,
                        **options)
    response.share_w0(model, base)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith(("trunks.", "heads.W0.")):
                parameter.normal_(0.0, 10.0)
    positions = spread_positions(np.random.default_rng(3))
    pairs = NeighborList(CUTOFF)(positions, torch.full((3,), BOX, dtype=torch.float64))
    energy, forces = nn.energy_and_forces(model, positions, *pairs, 0.0)
    base_energy, base_forces = nn.energy_and_forces(base, positions, *pairs, 0.0)
    assert torch.equal(forces, base_forces) and torch.equal(energy, base_energy)
    assert not torch.equal(nn.energy_and_forces(model, positions, *pairs, -0.05)[1], base_forces)


def test_fm_oracle_at_t0_is_fm_refs_recipe():
    """The other premise of t0_twin: fm_oracle at T0 trains the same heads on the same frames."""
    config = {"reference_temperature": 300.0}
    assert kinds.HEADS["fm_oracle"] == kinds.HEADS["fm_ref"]
    assert kinds.training_temperatures({"kind": "fm_oracle"}, config, 300.0) == kinds.training_temperatures(
        {"kind": "fm_ref"}, config)


def test_network_readout_coefficients_round_trip():
    model = small_model(["W0", "W1"])
    positions = spread_positions(np.random.default_rng(1))
    pairs = NeighborList(CUTOFF)(positions, torch.full((3,), BOX, dtype=torch.float64))
    coefficients = np.random.default_rng(2).normal(size=9)  # 8 features and the bias
    response.set_coefficients(model, "W1", coefficients)
    design = response.basis_forces(model, "W1", positions, *pairs).numpy()
    forces = nn.head_forces(model, positions, *pairs, heads=("W1",))["W1"].reshape(-1).numpy()
    assert np.allclose(design @ coefficients, forces, atol=1e-8)
