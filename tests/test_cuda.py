"""CUDA against CPU: the MD step, a DiffSim window and a force-matching training step.

Skipped without CUDA (CI has none); benchmarks/gpu_check.sh runs them on a GPU machine. The
CPU-side parts that need no GPU (the fixed pair layout, planned list checks) are tested in
test_nn.py, test_neighbors.py and test_md.py.
"""

import warnings

import numpy as np
import pytest
import torch

from thermocg import nn as cgnn
from thermocg.diffsim import SmoothObservables, window_loss
from thermocg.md import Simulation
from thermocg.neighbors import NeighborList
from thermocg.pair import LennardJones
from thermocg.units import cubic_box_length

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

N_SIDE = 8  # 512 beads at water density, as the pipeline's default
BOX = cubic_box_length(N_SIDE**3, 0.997)


def water_lattice(seed=0):
    rng = np.random.default_rng(seed)
    grid = (np.arange(N_SIDE) + 0.5) * BOX / N_SIDE
    points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    return points + rng.uniform(-0.03, 0.03, points.shape), np.full(3, BOX)


def default_like_network(dtype):
    torch.manual_seed(0)
    return cgnn.CGModel(n_features=32, n_sensitivities=20, cutoff=0.6, dtype=dtype)


def nve(device, dtype, velocities=None):
    positions, box = water_lattice()
    return Simulation(default_like_network(str(dtype).removeprefix("torch.")), positions, box, 300.0, dt=0.008,
                      integrator="nve", seed=0, dtype=dtype, device=device, velocities=velocities)


def test_cuda_md_steps_match_cpu_and_read_back_less_than_once_a_step():
    """50 NVE steps (no random numbers, so both devices follow one trajectory) of the default-size
    network in float32: CUDA (fixed pair layout, planned list checks) stays within float32
    round-off of CPU (filtered pairs), and CUDA synchronises with the host less than once a step."""
    cpu = nve("cpu", torch.float32)
    cuda = nve("cuda", torch.float32, velocities=cpu.velocities)
    assert cuda.force_field.fixed_pair_layout and not cpu.force_field.fixed_pair_layout
    cuda.run(5)  # warm-up (allocator, first list)
    cpu.run(5)
    torch.cuda.synchronize()
    steps = 45
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            cuda.run(steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    cpu.run(steps)
    print(f"{syncs} host synchronisations in {steps} CUDA steps; "
          f"{cuda.force_field.neighbor_list.n_builds} builds, {cuda.force_field.neighbor_list.n_checks} checks")
    assert syncs < steps
    # float32 round-off (1e-7 relative) grows through 50 steps of a chaotic system: 1e-4 nm is ~1e-5 of the box.
    torch.testing.assert_close(cuda.positions.cpu(), cpu.positions, rtol=0, atol=1e-4)
    assert cuda.potential_energy() == pytest.approx(cpu.potential_energy(), rel=1e-4)


def test_cuda_diffsim_window_loss_and_gradient_match_cpu():
    """A 20-step differentiable window of shifted-force LJ (NVE, float64): same loss and gradient."""
    observables = SmoothObservables(rdf_bin_width=0.01, rdf_smearing=0.01)
    results = []
    for device in ("cpu", "cuda"):
        positions, box = water_lattice(seed=1)
        potential = LennardJones(2.0, 0.29, 0.6, shift="force")
        sim = Simulation(potential, positions, box, 300.0, dt=0.004, integrator="nve", seed=0, dtype=torch.float64,
                         device=device, velocities=results[0][2] if results else None)
        n_bins = len(observables.rdf_edges(box)) - 1
        loss, _, _ = window_loss(sim, torch.ones(n_bins, dtype=torch.float64, device=device), observables=observables,
                                 window=20, sample_every=5)
        loss.backward()
        results.append((loss.item(), torch.stack([potential.epsilon.grad, potential.sigma.grad]).cpu(),
                        sim.velocities.cpu()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-9)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-7, atol=1e-10)


def test_cuda_force_matching_step_matches_cpu():
    """The force-matching loss of training (forces with create_graph, MSE) and its parameter
    gradient, float64, two frames batched: CUDA equals CPU to round-off."""
    gradients = []
    for device in ("cpu", "cuda"):
        model = default_like_network("float64").to(device)
        frames = []
        for seed in (3, 4):
            positions = torch.as_tensor(water_lattice(seed)[0], device=device)
            i, j, shift = NeighborList(model.cutoff)(positions, torch.full((3,), BOX, dtype=torch.float64, device=device))
            frames.append((positions, i, j, shift))
        positions, i, j, shift, _ = cgnn.batch_frames(frames)
        target = torch.as_tensor(np.random.default_rng(5).normal(0, 100, positions.shape), device=device)
        _, forces = cgnn.energy_and_forces(model, positions, i, j, shift, 0.1, create_graph=True)
        loss = ((forces - target) ** 2).mean()
        loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).cpu())
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-8, atol=1e-8)


def test_cuda_thermal_terms_fit_matches_cpu():
    """The closed-form fit of e and W1 (response.fit_thermal_terms) on a model and frames on CUDA,
    as fit jobs on a GPU node run it: the same coefficients as on the CPU (it once failed there,
    turning CUDA tensors into numpy arrays)."""
    from dataclasses import replace

    from test_response import radial_w1_truth, small_model, synthetic_frames, zero_w0

    from thermocg import response

    truth = radial_w1_truth()
    frames = synthetic_frames(truth, 10, seed=1) + synthetic_frames(truth, 6, seed=2)

    def on(device, frame):
        move = lambda value: None if value is None else tuple(v.to(device) for v in value)
        return replace(frame, positions=frame.positions.to(device), forces=frame.forces.to(device),
                       energy=frame.energy.to(device), bead_energies=frame.bead_energies.to(device),
                       pairs=move(frame.pairs), local_pairs=move(frame.local_pairs))

    fitted = {}
    for device in ("cpu", "cuda"):
        model = zero_w0(small_model(["W0", "W1", "e"], pair_heads=["W1"])).to(device)
        rows = response.fit_thermal_terms(model, "local", [on(device, f) for f in frames])
        assert any(row["head"] == "W1" and row["chosen"] and row["relative_ridge"] != float("inf") for row in rows)
        fitted[device] = {name: p.detach().cpu() for name, p in model.state_dict().items()
                          if name.startswith(("heads.W1.", "heads.e."))}
    for name, value in fitted["cpu"].items():
        torch.testing.assert_close(fitted["cuda"][name], value, rtol=1e-6, atol=1e-8, msg=name)
