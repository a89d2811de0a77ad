"""Tests of thermocg.nn: the HIP-NN-TS CG model, its prior, forces, TorchScript and files."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from thermocg import nn as cgnn
from thermocg.neighbors import NeighborList
from thermocg.units import cubic_box_length

CUTOFF = 0.5  # nm; small models and boxes keep every test fast
N_BEADS = 64
BOX = cubic_box_length(N_BEADS, 0.997)  # 1.243 nm


def small_model(dtype="float64", seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(
        n_features=12,
        n_sensitivities=6,
        n_interaction_layers=2,  # covers the uniform first layer and a general second one
        n_dense_layers=1,
        cutoff=CUTOFF,
        sensitivity_soft_min=0.2,
        sensitivity_soft_max=0.45,
        heads=("W0", "W1", "W2", "e"),
        dtype=dtype,
    )
    config.update(overrides)
    return cgnn.CGModel(**config)


def lattice_positions(seed=0, jitter=0.06, n_side=4, box=BOX):
    """Jittered cubic lattice: liquid-like spacing, a few pairs inside the prior's range."""
    rng = np.random.default_rng(seed)
    grid = (np.arange(n_side) + 0.5) * box / n_side
    points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    points += rng.uniform(-jitter, jitter, points.shape)
    return torch.as_tensor(points % box, dtype=torch.float64)


def pairs(positions, box=BOX, skin=0.0):
    box_vector = torch.full((3,), box, dtype=positions.dtype)
    return NeighborList(CUTOFF, skin=skin)(positions, box_vector)


def energy_forces(model, positions, box=BOX, dbeta=0.2, skin=0.0):
    dbeta = torch.tensor(dbeta, dtype=positions.dtype)
    return cgnn.energy_and_forces(model, positions, *pairs(positions, box, skin), dbeta)


@pytest.mark.parametrize("angular_order", [2, 3])
def test_forces_are_minus_the_finite_difference_gradient(angular_order):
    model = small_model(angular_order=angular_order)
    positions = lattice_positions()
    i, j, shift = pairs(positions, skin=0.1)  # fixed list; the skin covers the small moves
    dbeta = torch.tensor(0.3, dtype=torch.float64)
    _, forces = cgnn.energy_and_forces(model, positions, i, j, shift, dbeta)
    step = 2e-6  # the prior's wall is steep (0.014 nm decay): a longer step errs by O(step^2)
    for bead, axis in [(0, 0), (5, 1), (17, 2), (40, 0), (63, 1)]:
        plus, minus = positions.clone(), positions.clone()
        plus[bead, axis] += step
        minus[bead, axis] -= step
        with torch.no_grad():
            gradient = (model(plus, i, j, shift, dbeta) - model(minus, i, j, shift, dbeta)) / (2 * step)
        assert forces[bead, axis].item() == pytest.approx(-gradient.item(), rel=1e-6, abs=1e-6)


def test_angular_harmonics_give_the_legendre_polynomials_and_see_a_tetrahedron_only_at_order_3():
    generator = torch.Generator().manual_seed(5)
    u = torch.nn.functional.normalize(torch.randn(3, 20, dtype=torch.float64, generator=generator), dim=0)
    v = torch.nn.functional.normalize(torch.randn(3, 20, dtype=torch.float64, generator=generator), dim=0)
    products = cgnn.angular_harmonics(u, 3) * cgnn.angular_harmonics(v, 3)
    c = (u * v).sum(0)
    # rows of order l: 2 l + 1 of them; their dot product is the Frobenius product of the traceless rhat^l
    for rows, expected in [(slice(0, 1), torch.ones_like(c)), (slice(1, 4), c), (slice(4, 9), c**2 - 1 / 3),
                           (slice(9, 16), c**3 - 0.6 * c)]:  # fmt: skip
        torch.testing.assert_close(products[rows].sum(0), expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(cgnn.angular_harmonics(u, 2), cgnn.angular_harmonics(u, 3)[:9], rtol=0, atol=0)

    corners = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64).t() / math.sqrt(3)
    summed = cgnn.angular_harmonics(corners, 3).sum(1)
    assert summed[1:9].abs().max().item() < 1e-14  # orders 1 and 2 cannot see the tetrahedron
    # order 3: |sum|^2 = sum over pairs of c^3 - 3c/5, c = -1/3 between corners, 1 on the diagonal
    assert summed[9:].square().sum().item() == pytest.approx(4 * 0.4 + 12 * (-1 / 27 + 0.2), rel=1e-12)
    with pytest.raises(ValueError, match="angular order"):
        cgnn.angular_harmonics(u, 4)


def test_order_2_models_keep_the_file_layout_of_hipnn_ts():
    names = set(small_model(angular_order=2).state_dict())
    assert not any("octupole" in name for name in names)
    order3 = set(small_model(angular_order=3).state_dict())
    assert order3 - names == {f"trunks.shared.blocks.{k}.interaction.octupole_scale" for k in range(2)}
    with pytest.raises(ValueError, match="angular_order"):
        small_model(angular_order=1)


def test_energy_is_invariant_to_translation_and_permutation():
    model = small_model()
    positions = lattice_positions()
    energy, forces = energy_forces(model, positions)

    moved = (positions + torch.tensor([0.37, -0.81, 1.9], dtype=torch.float64)) % BOX
    moved_energy, moved_forces = energy_forces(model, moved)
    assert moved_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(moved_forces, forces, rtol=1e-8, atol=1e-8)

    order = torch.randperm(N_BEADS, generator=torch.Generator().manual_seed(3))
    permuted_energy, permuted_forces = energy_forces(model, positions[order])
    assert permuted_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(permuted_forces, forces[order], rtol=1e-8, atol=1e-8)


def test_forces_rotate_with_a_rotation_that_maps_the_box_onto_itself():
    model = small_model()
    positions = lattice_positions()
    energy, forces = energy_forces(model, positions)
    # 90 degrees about z followed by swapping y and z: a signed permutation of the axes.
    rotation = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    rotated_energy, rotated_forces = energy_forces(model, (positions @ rotation.T) % BOX)
    assert rotated_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(rotated_forces, forces @ rotation.T, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("angular_order", [2, 3])
def test_forces_rotate_with_any_rotation_of_an_isolated_cluster(angular_order):
    # A cluster in a box much larger than it plus the cutoff: periodicity plays no part.
    model = small_model(angular_order=angular_order)
    box = 4.0
    cluster = lattice_positions(n_side=3, box=0.93) - 0.465
    center = torch.full((3,), box / 2, dtype=torch.float64)
    energy, forces = energy_forces(model, cluster + center, box=box)
    q = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8, 0.2], dtype=torch.float64), dim=0)
    w, x, y, z = q.tolist()  # rotation matrix of a unit quaternion
    rotation = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )
    rotated_energy, rotated_forces = energy_forces(model, cluster @ rotation.T + center, box=box)
    assert rotated_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(rotated_forces, forces @ rotation.T, rtol=1e-8, atol=1e-8)


def test_moving_a_bead_by_a_box_vector_changes_nothing():
    model = small_model()
    positions = lattice_positions()
    energy, forces = energy_forces(model, positions)
    moved = positions.clone()
    moved[7] += torch.tensor([BOX, 0.0, -2 * BOX], dtype=torch.float64)
    moved_energy, moved_forces = energy_forces(model, moved)
    assert moved_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(moved_forces, forces, rtol=1e-8, atol=1e-8)


def test_pairs_beyond_the_cutoff_are_ignored():
    model = small_model()
    positions = lattice_positions()
    energy, forces = energy_forces(model, positions)
    skin_energy, skin_forces = energy_forces(model, positions, skin=0.1)
    assert skin_energy.item() == pytest.approx(energy.item(), rel=1e-12)
    torch.testing.assert_close(skin_forces, forces, rtol=1e-10, atol=1e-10)


def test_double_backward_gives_the_finite_difference_parameter_gradient():
    model = small_model()
    positions = lattice_positions()
    i, j, shift = pairs(positions)
    dbeta = torch.tensor(0.25, dtype=torch.float64)
    target = torch.randn(positions.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def force_loss():
        _, forces = cgnn.energy_and_forces(model, positions, i, j, shift, dbeta, create_graph=True)
        return (forces - target).square().mean()

    force_loss().backward()
    trunk = model.trunks["shared"]
    for parameter, index in [
        (trunk.blocks[1].interaction.weights, (2, 3, 4)),  # V of the second interaction layer
        (trunk.blocks[0].interaction.sensitivity.mu, (1,)),  # a sensitivity centre
        (model.heads["W1"].readouts[1].weight, (0, 5)),  # the first-order head
    ]:
        analytic = parameter.grad[index].item()
        step = 1e-6
        losses = []
        for sign in (1, -1):
            with torch.no_grad():
                parameter[index] += sign * step
            losses.append(force_loss().item())  # forces need autograd, so outside no_grad
            with torch.no_grad():
                parameter[index] -= sign * step
        loss_plus, loss_minus = losses
        assert analytic == pytest.approx((loss_plus - loss_minus) / (2 * step), rel=1e-5, abs=1e-9)


def test_gradient_of_forces_with_respect_to_tracked_positions():
    # DiffSim differentiates forces with respect to positions that are themselves tracked.
    model = small_model()
    base = lattice_positions()
    i, j, shift = pairs(base, skin=0.1)
    offset = torch.zeros_like(base, requires_grad=True)
    direction = torch.randn(base.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def projected_force(positions):
        _, forces = cgnn.energy_and_forces(model, positions, i, j, shift, 0.1, create_graph=True)
        return (forces * direction).sum()

    (gradient,) = torch.autograd.grad(projected_force(base + offset), offset)
    step = 1e-5
    for bead, axis in [(3, 0), (30, 2)]:
        plus, minus = base.clone(), base.clone()
        plus[bead, axis] += step
        minus[bead, axis] -= step
        numeric = (projected_force(plus) - projected_force(minus)).item() / (2 * step)
        assert gradient[bead, axis].item() == pytest.approx(numeric, rel=1e-5, abs=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("angular_order", [2, 3])
def test_torchscript_matches_eager_with_double_backward(angular_order):
    model = small_model(angular_order=angular_order)
    scripted = torch.jit.script(model)
    assert scripted.cutoff == model.cutoff
    positions = lattice_positions()
    i, j, shift = pairs(positions)
    dbeta = torch.tensor(-0.1, dtype=torch.float64)
    energy, forces = cgnn.energy_and_forces(model, positions, i, j, shift, dbeta, create_graph=True)
    forces.square().sum().backward()
    eager_grad = model.trunks["shared"].blocks[1].interaction.weights.grad.clone()
    for _ in range(3):  # the profiling executor optimises the graph after the first calls
        scripted.zero_grad()
        s_energy, s_forces = cgnn.energy_and_forces(scripted, positions, i, j, shift, dbeta, create_graph=True)
        s_forces.square().sum().backward()
        assert s_energy.item() == pytest.approx(energy.item(), rel=1e-12)
        torch.testing.assert_close(s_forces, forces, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(scripted.trunks.shared.blocks[1].interaction.weights.grad, eager_grad)
    s_per_bead = scripted.per_bead_energies(positions, i, j, shift)
    assert set(s_per_bead) == {"prior", "W0", "W1", "W2", "e"}


@pytest.mark.parametrize("angular_order", [2, 3])
def test_save_load_round_trip_in_a_fresh_process(tmp_path, angular_order):
    model = small_model(angular_order=angular_order)
    positions = lattice_positions()
    i, j, shift = pairs(positions)
    energy = model(positions, i, j, shift, torch.tensor(0.2, dtype=torch.float64)).item()
    path = tmp_path / "model.pt"
    metadata = {"T0": 300.0, "beta0": 0.4009, "units": {"energy": "kJ/mol"}, "data_hash": "abc123"}
    cgnn.save_model(path, model, metadata)
    torch.save({"positions": positions, "i": i, "j": j, "shift": shift}, tmp_path / "frame.pt")

    script = f"""
import json, torch
from thermocg.nn import load_model
raw = torch.load({str(path)!r}, weights_only=True)  # plain data only: no pickled code
model, metadata = load_model({str(path)!r})
frame = torch.load({str(tmp_path / "frame.pt")!r}, weights_only=True)
energy = model(frame["positions"], frame["i"], frame["j"], frame["shift"], torch.tensor(0.2, dtype=torch.float64))
print(json.dumps({{"energy": energy.item(), "metadata": metadata, "config": raw["config"]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["energy"] == pytest.approx(energy, rel=1e-12)
    assert loaded["metadata"] == metadata
    assert loaded["config"] == model.config


def test_save_rejects_metadata_that_is_not_plain(tmp_path):
    with pytest.raises(TypeError, match="plain JSON"):
        cgnn.save_model(tmp_path / "model.pt", small_model(), {"T0": np.float32(300.0)})
    assert not (tmp_path / "model.pt").exists()


def test_float32_agrees_with_float64():
    model64 = small_model("float64")
    model32 = cgnn.CGModel(**{**model64.config, "dtype": "float32"})
    model32.load_state_dict(model64.state_dict())
    positions = lattice_positions()
    energy64, forces64 = energy_forces(model64, positions)
    energy32, forces32 = energy_forces(model32, positions.float())
    assert energy32.dtype == torch.float32 and forces32.dtype == torch.float32
    assert energy32.item() == pytest.approx(energy64.item(), rel=1e-5)
    scale = forces64.abs().max().item()
    torch.testing.assert_close(forces32.double(), forces64, rtol=0.0, atol=1e-5 * scale)


def test_prior_is_repulsive_and_zero_beyond_its_onset():
    prior = cgnn.RepulsivePrior(onset_radius=0.22, decay_length=0.02, strength=5.0)
    r = torch.linspace(0.1, 0.4, 301, dtype=torch.float64, requires_grad=True)
    energy = prior.pair_energy(r)
    (slope,) = torch.autograd.grad(energy.sum(), r)
    below, beyond = r.detach() < 0.22, r.detach() >= 0.22
    assert (energy[below] > 0).all() and (slope[below] < 0).all()  # positive, and pushes apart
    assert (energy[beyond] == 0).all() and (slope[beyond] == 0).all()
    assert (energy[below][:-1] > energy[below][1:]).all()
    # C^2 onset: just inside it U ~ A |x|^3 / 6 with x = (r - r_on) / lambda.
    near = torch.tensor([0.2199], dtype=torch.float64)
    assert prior.pair_energy(near).item() == pytest.approx(5.0 * 0.005**3 / 6, rel=1e-2)

    # Two beads inside the onset in a model: equal and opposite forces pushing them apart.
    model = small_model(prior={"onset_radius": 0.22, "decay_length": 0.02, "strength": 5.0})
    two = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.68]], dtype=torch.float64)
    i, j, shift = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.zeros(2, 3, dtype=torch.float64)
    forces = cgnn.head_forces(model, two, i, j, shift, heads=("prior",))["prior"]
    assert forces[1, 2] > 0 and forces[0, 2] < 0
    torch.testing.assert_close(forces[0], -forces[1])
    energies = model.per_bead_energies(two, i, j, shift)
    assert energies["prior"].sum().item() == pytest.approx(prior.pair_energy(torch.tensor(0.18)).item(), rel=1e-6)


def test_initialisation_is_deterministic_under_manual_seed():
    first, second, other = small_model(seed=4), small_model(seed=4), small_model(seed=5)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(first.state_dict().values(), other.state_dict().values()))


def test_head_forces_add_up_to_the_total_force():
    model = small_model()
    positions = lattice_positions()
    i, j, shift = pairs(positions)
    dbeta = 0.15
    _, total = cgnn.energy_and_forces(model, positions, i, j, shift, dbeta)
    energies, forces = cgnn.head_energies_and_forces(model, positions, i, j, shift, heads=("prior", "W0", "W1", "W2"))
    assert set(energies) == {"prior", "W0", "W1", "W2", "e"}
    assert all(value.shape == (N_BEADS,) for value in energies.values())
    combined = forces["prior"] + forces["W0"] + dbeta * forces["W1"] + 0.5 * dbeta**2 * forces["W2"]
    torch.testing.assert_close(combined, total, rtol=1e-10, atol=1e-10)


def _energy_and_beta_derivatives(model, positions):
    """W, dW/dbeta and d2W/dbeta2 at beta0 (autograd in dbeta)."""
    dbeta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    energy = model(positions, *pairs(positions), dbeta)
    (first,) = torch.autograd.grad(energy, dbeta, create_graph=True)
    (second,) = torch.autograd.grad(first, dbeta, allow_unused=True) if first.requires_grad else (None,)
    return energy.detach(), first.detach(), torch.zeros_like(first) if second is None else second


@pytest.mark.parametrize("heads", [("W0", "W1"), ("W0", "W1", "W2")])
def test_both_expansions_agree_with_the_heads_at_beta0(heads):
    # W1 and W2 are dW/dbeta and d2W/dbeta2 at beta0 in either series: they differ only further out.
    beta0 = 0.4
    positions = lattice_positions()
    plain = small_model(heads=heads)
    reduced = small_model(heads=heads, expansion="reduced", reference_beta=beta0)
    energies = plain.per_bead_energies(positions, *pairs(positions))
    for model in (plain, reduced):
        energy, first, second = _energy_and_beta_derivatives(model, positions)
        torch.testing.assert_close(energy, (energies["prior"] + energies["W0"]).sum())
        torch.testing.assert_close(first, energies["W1"].sum().detach())
        if "W2" in heads:
            torch.testing.assert_close(second, energies["W2"].sum().detach())
    with pytest.raises(ValueError, match="reference_beta"):
        small_model(expansion="reduced")


def test_reduced_expansion_is_the_series_of_beta_w():
    # First order: beta W = beta0 W0 + dbeta (W0 + beta0 W1) exactly, i.e. W = E - T S with E and S
    # independent of T; em's form is then (beta0 W0 + dbeta E) / beta. Second order with
    # W2 = -2 W1 / beta0 (zero curvature of beta W) is the first-order model.
    beta0, dbeta = 0.4, -0.23
    positions = lattice_positions()
    first_order = small_model(heads=("W0", "W1"), expansion="reduced", reference_beta=beta0)
    energies = first_order.per_bead_energies(positions, *pairs(positions))
    w0, w1 = (energies["prior"] + energies["W0"]).sum(), energies["W1"].sum()
    energy = first_order(positions, *pairs(positions), torch.tensor(dbeta, dtype=torch.float64))
    torch.testing.assert_close(energy, (beta0 * w0 + dbeta * (w0 + beta0 * w1)) / (beta0 + dbeta))

    second_order = small_model(heads=("W0", "W1", "W2"), expansion="reduced", reference_beta=beta0)
    second_order.load_state_dict(first_order.state_dict(), strict=False)
    with torch.no_grad():
        for w1_parameter, w2_parameter in zip(second_order.heads["W1"].parameters(), second_order.heads["W2"].parameters()):
            w2_parameter.copy_(-2.0 / beta0 * w1_parameter)
    torch.testing.assert_close(second_order(positions, *pairs(positions), torch.tensor(dbeta, dtype=torch.float64)), energy)

    em = small_model(heads=("W0", "e"), energy_matching_beta0=beta0, expansion="reduced", reference_beta=beta0)
    energies = em.per_bead_energies(positions, *pairs(positions))
    w0, e = (energies["prior"] + energies["W0"]).sum(), energies["e"].sum()
    expected = (beta0 * w0 + dbeta * e) / (beta0 + dbeta)
    torch.testing.assert_close(em(positions, *pairs(positions), torch.tensor(dbeta, dtype=torch.float64)), expected)


@pytest.mark.parametrize("expansion", ["beta", "reduced"])
def test_energy_matching_gives_the_learned_mean_energy_as_d_beta_w_d_beta(expansion):
    # METHOD.md: d(beta W)/dbeta = <u>_R = E at beta0, W including the prior, so that
    # F_b = (F_E - F)/beta0 with F the model's whole mean force
    beta0 = 0.4
    em = small_model(heads=("W0", "e"), energy_matching_beta0=beta0, expansion=expansion, reference_beta=beta0)
    positions = lattice_positions()
    energies = em.per_bead_energies(positions, *pairs(positions))
    assert energies["prior"].abs().sum() > 1.0  # the lattice reaches into the prior
    dbeta = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    beta_w = (beta0 + dbeta) * em(positions, *pairs(positions), dbeta)
    (derivative,) = torch.autograd.grad(beta_w, dbeta)
    torch.testing.assert_close(derivative, energies["e"].sum().detach())


def test_batched_frames_with_per_bead_dbeta_match_single_frames():
    model = small_model()
    frames, expected_energy, expected_forces, dbetas = [], 0.0, [], [0.1, -0.2]
    for seed, dbeta in zip((0, 1), dbetas):
        positions = lattice_positions(seed)
        frames.append((positions, *pairs(positions)))
        energy, forces = cgnn.energy_and_forces(model, *frames[-1], dbeta)
        expected_energy += energy.item()
        expected_forces.append(forces)
    positions, i, j, shift, frame_of_bead = cgnn.batch_frames(frames)
    per_bead_dbeta = torch.tensor(dbetas, dtype=torch.float64)[frame_of_bead]
    energy, forces = cgnn.energy_and_forces(model, positions, i, j, shift, per_bead_dbeta)
    assert energy.item() == pytest.approx(expected_energy, rel=1e-12)
    torch.testing.assert_close(forces, torch.cat(expected_forces), rtol=1e-10, atol=1e-10)


def test_heads_trunks_and_config_options():
    model = small_model(heads=("W0",), separate_trunks=False, prior=None, n_interaction_layers=1)
    positions = lattice_positions()
    energies = model.per_bead_energies(positions, *pairs(positions))
    assert set(energies) == {"prior", "W0"} and (energies["prior"] == 0).all()

    separate = small_model(heads=("W0", "W1"), separate_trunks=True, head_scales={"W1": 100.0})
    assert set(separate.trunks) == {"W0", "W1"}
    w0_trunk = {id(p) for p in separate.trunks["W0"].parameters()}
    assert not w0_trunk & {id(p) for p in separate.trunks["W1"].parameters()}  # no coupling

    with pytest.raises(ValueError, match="heads"):
        cgnn.CGModel(heads=("W3",))
    with pytest.raises(ValueError, match="onset"):
        cgnn.CGModel(cutoff=0.2, sensitivity_soft_min=0.1, sensitivity_soft_max=0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = small_model()
    positions = lattice_positions()
    energy, forces = energy_forces(model, positions)
    cuda_pairs = [x.cuda() for x in pairs(positions)]
    cuda_energy, cuda_forces = cgnn.energy_and_forces(model.cuda(), positions.cuda(), *cuda_pairs, 0.2)
    assert cuda_energy.item() == pytest.approx(energy.item(), rel=1e-10)
    torch.testing.assert_close(cuda_forces.cpu(), forces, rtol=1e-8, atol=1e-8)


def test_sensitivities_follow_the_hipnn_form():
    sensitivity = cgnn.InverseSensitivity(5, 0.2, 0.5, 0.6).double()
    r = torch.tensor([0.25, 0.4], dtype=torch.float64)
    mu, sigma = sensitivity.mu.detach(), sensitivity.sigma.detach()
    expected = torch.exp(-0.5 * sigma**2 * (1 / r[:, None] - 1 / mu) ** 2)
    torch.testing.assert_close(sensitivity(r), expected)
    torch.testing.assert_close(1 / mu, torch.linspace(1 / 0.5, 1 / 0.2, 5, dtype=torch.float64))
    assert cgnn.cutoff_taper(torch.tensor(0.6), 0.6).item() == pytest.approx(0.0, abs=1e-12)
    assert cgnn.cutoff_taper(torch.tensor(0.3), 0.6).item() == pytest.approx(math.cos(math.pi / 4) ** 2)


def test_a_fixed_pair_layout_gives_the_filtered_energy_and_forces_without_host_reads(monkeypatch):
    """With the list's PairLayout, pairs beyond the cutoff are masked instead of dropped: the same
    energy and forces (two layers, so the per-j layout is used too, float64), and the call reads
    nothing back to the host (every way of doing so raises here)."""
    model = cgnn.CGModel(n_features=16, n_sensitivities=8, n_interaction_layers=2, cutoff=CUTOFF,
                         sensitivity_soft_min=0.2, sensitivity_soft_max=0.45, dtype="float64")
    positions = lattice_positions(seed=5)
    i, j, shift = pairs(positions, skin=0.1)
    r = (positions[j] - positions[i] + shift).norm(dim=1)
    assert (r > CUTOFF).sum() > 50  # the skin holds pairs to mask
    energy, forces = cgnn.energy_and_forces(model, positions, i, j, shift, 0.2)
    layout = model.pair_layout(i, j, positions.shape[0])

    def host_read(*args, **kwargs):
        raise AssertionError("host read in a call with a fixed layout")

    with monkeypatch.context() as patch:
        for name in ("__bool__", "__int__", "__float__", "item", "tolist"):
            patch.setattr(torch.Tensor, name, host_read)
        patch.setattr(torch, "nonzero", host_read)
        positions_ = positions.detach().requires_grad_(True)
        masked_energy = model(positions_, i, j, shift, torch.tensor(0.2, dtype=torch.float64), layout)
        (gradient,) = torch.autograd.grad(masked_energy, positions_)
    torch.testing.assert_close(masked_energy.detach(), energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(-gradient, forces, rtol=1e-10, atol=1e-10)
