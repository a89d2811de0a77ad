"""Tests of the CG MD engine (thermocg.md) and the pair potentials (thermocg.pair).

The Lennard-Jones fluid is simulated in argon-like real units (sigma 0.34 nm, epsilon 0.9977 kJ/mol,
mass 39.948 amu, so tau = sigma sqrt(m/epsilon) = 2.151 ps); state points are quoted in reduced
units (rho* = rho sigma^3, T* = k_B T / epsilon).
"""

import logging
import os
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch

from thermocg import checkpoints
from thermocg.io import cg_topology, read_table
from thermocg.md import BlowUpError, BlowUpGuard, Simulation, run_md
from thermocg.neighbors import NeighborList
from thermocg.pair import LennardJones, PairCorrection, SumPotential, reduced_lj_units
from thermocg.units import KB

EPSILON, SIGMA, MASS = 0.9977, 0.34, 39.948
LJ = reduced_lj_units(EPSILON, SIGMA, MASS)
TAU = LJ["tau"]


def shared_dir():
    here = Path(__file__).resolve().parents[2] / "shared"
    return here if here.exists() else Path(os.environ.get("THERMOCG_SHARED", here))


# Small systems are latency bound: one thread is faster and immune to oversubscription.
pytestmark = pytest.mark.usefixtures("one_thread")


def fcc_lattice(n_cells, box_length):
    """4 n_cells^3 points on an fcc lattice filling a cubic box (nm)."""
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return ((cells[:, None, :] + base[None]).reshape(-1, 3) + 0.25) * box_length / n_cells


def lj_box(n_cells, rho_star):
    n = 4 * n_cells**3
    box_length = (n / LJ["density"](rho_star)) ** (1.0 / 3.0)
    return fcc_lattice(n_cells, box_length), np.full(3, box_length)


@pytest.fixture(scope="module")
def lj_liquid():
    """256 LJ beads at rho* = 0.845, T* = 1.0 (cutoff 2.5 sigma), melted and equilibrated for 5 tau."""
    positions, box = lj_box(4, 0.845)
    sim = Simulation(LennardJones(EPSILON, SIGMA, 2.5 * SIGMA), positions, box, LJ["temperature"](1.0),
                     masses=MASS, dt=0.005 * TAU, friction=5.0 / TAU, skin=0.3 * SIGMA, seed=1,
                     dtype=torch.float64, device="cpu")
    sim.run(1000)
    return sim


# --- pair potentials ---------------------------------------------------------------------------
def two_beads(r, box_length=3.0):
    positions = torch.tensor([[0.5, 0.5, 0.5], [0.5 + r, 0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    box = torch.full((3,), box_length, dtype=torch.float64)
    return positions, box


def test_lennard_jones_energy_forces_and_cutoff():
    lj = LennardJones(EPSILON, SIGMA, 2.5 * SIGMA, shift=None)
    nl = NeighborList(lj.cutoff, skin=0.1)
    for r in [0.9 * SIGMA, 2 ** (1 / 6) * SIGMA, 1.7 * SIGMA]:
        positions, box = two_beads(r)
        energy = lj(positions, *nl(positions, box), 0.0)
        expected = 4 * EPSILON * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6)
        assert energy.item() == pytest.approx(expected, rel=1e-12)  # full list halved: counted once
        (gradient,) = torch.autograd.grad(energy, positions)
        force_on_second = 24 * EPSILON / r * (2 * (SIGMA / r) ** 12 - (SIGMA / r) ** 6)
        assert float(-gradient[1, 0]) == pytest.approx(force_on_second, rel=1e-10, abs=1e-10)
        assert torch.allclose(gradient.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # Beyond the cutoff but inside the skin: exactly zero energy and force.
    positions, box = two_beads(2.5 * SIGMA + 0.05)
    energy = lj(positions, *nl(positions, box), 0.0)
    assert len(nl(positions, box)[0]) == 2 and energy.item() == 0.0
    # Shifted: energy (and for "force" also the force) goes continuously to zero at the cutoff.
    for shift in ("energy", "force"):
        shifted = LennardJones(EPSILON, SIGMA, 2.5 * SIGMA, shift=shift)
        positions, box = two_beads(2.5 * SIGMA - 1e-9)
        energy = shifted(positions, *nl(positions, box), 0.0)
        (gradient,) = torch.autograd.grad(energy, positions)
        assert abs(energy.item()) < 1e-9
        assert (gradient.abs().max().item() < 1e-7) == (shift == "force")


def test_pair_correction_is_smooth_zero_at_its_ends_and_linear_in_dbeta():
    correction = PairCorrection(cutoff=0.6, n_basis=12, r_min=0.25)
    with torch.no_grad():
        correction.a.copy_(torch.linspace(-1, 1, 12, dtype=torch.float64))
        correction.b.copy_(torch.linspace(2, -3, 12, dtype=torch.float64))
    r = torch.tensor([0.25, 0.25 + 1e-7, 0.6 - 1e-7, 0.6, 0.7, 0.1], dtype=torch.float64, requires_grad=True)
    energy = correction.pair_energy(r, 0.01)
    (slope,) = torch.autograd.grad(energy.sum(), r)
    assert torch.all(energy.abs() < 1e-12) and torch.all(slope.abs() < 1e-6)
    r = torch.linspace(0.3, 0.55, 7, dtype=torch.float64)
    a_only, with_b = correction.pair_energy(r, 0.0), correction.pair_energy(r, 0.02)
    with torch.no_grad():
        correction.a.copy_(correction.b)
    b_only = correction.pair_energy(r, 0.0)
    assert torch.allclose(with_b, a_only + 0.02 * b_only, atol=1e-12)
    # Cubic B-splines sum to one: all-ones coefficients give 1 away from the pinned ends.
    with torch.no_grad():
        correction.a.fill_(1.0)
    middle = torch.linspace(0.25 + 3 * correction.spacing, 0.6 - 3 * correction.spacing, 11, dtype=torch.float64)
    assert torch.allclose(correction.pair_energy(middle, 0.0), torch.ones_like(middle), atol=1e-12)


def test_sum_potential_adds_terms_and_takes_the_largest_cutoff():
    lj = LennardJones(EPSILON, SIGMA, 0.5)
    correction = PairCorrection(cutoff=0.8)
    with torch.no_grad():
        correction.a.fill_(0.3)
    total = lj + correction
    assert isinstance(total, SumPotential) and total.cutoff == 0.8
    assert len((total + LennardJones(1.0, 0.3, 0.6)).terms) == 3
    positions, box = two_beads(0.45)
    pairs = NeighborList(total.cutoff)(positions, box)
    assert total(positions, *pairs, 0.0).item() == pytest.approx(
        lj(positions, *pairs, 0.0).item() + correction(positions, *pairs, 0.0).item(), rel=1e-12)


# --- integrators ---------------------------------------------------------------------------------
def nve_energy_trace(start, dt_tau, n_tau=5.0, n_samples=50):
    """Total energy per bead / epsilon, sampled over n_tau, and the final total momentum."""
    velocities = start.velocities - start.velocities.mean(0)  # equal masses: zero total momentum
    sim = Simulation(start.potential, start.positions, start.box, start.temperature, masses=MASS,
                     dt=dt_tau * TAU, integrator="nve", skin=0.3 * SIGMA, dtype=torch.float64, device="cpu",
                     velocities=velocities)
    stride = int(round(n_tau / dt_tau / n_samples))
    times, energies = [], []
    for _ in range(n_samples):
        sim.run(stride)
        times.append(sim.step * dt_tau)
        energies.append((sim.potential_energy() + sim.kinetic_energy()) / (sim.n_beads * EPSILON))
    return np.array(times), np.array(energies), sim.total_momentum()


def test_nve_conserves_energy_and_momentum(lj_liquid):
    """Velocity Verlet, float64, dt = 0.005 tau, over 5 tau (1000 steps), 256 LJ beads.

    Bounds (per bead, in epsilon): std of the total energy < 5e-4 (measured 1.8e-4; the
    truncation at 2.5 sigma makes the force jump, which is where most of it comes from), drift
    (linear fit) < 1e-4 per tau (measured ~1e-5), and halving dt cuts the fluctuations by more
    than 2.5x (second-order integrator: 4x expected, measured 3.6x). Total momentum stays zero to
    rounding: |P| < 1e-9 amu nm/ps (the thermal scale sqrt(N m k_B T) is ~100).
    """
    times, energies, momentum = nve_energy_trace(lj_liquid, 0.005)
    drift = np.polyfit(times, energies, 1)[0]
    assert energies.std() < 5e-4, energies.std()
    assert abs(drift) < 1e-4, drift
    assert np.abs(momentum).max() < 1e-9
    _, coarse, _ = nve_energy_trace(lj_liquid, 0.01)
    assert coarse.std() / energies.std() > 2.5


def test_langevin_holds_the_kinetic_temperature_and_thermalises_momentum(lj_liquid):
    """BAOAB, gamma = 5/tau: <T_kin> = T within 4 standard errors (block averages, 10 blocks),
    and the total momentum, which Langevin does not conserve, has <P_a^2> = N m k_B T per
    component within 30% (about 150 independent samples at this friction)."""
    sim = Simulation(lj_liquid.potential, lj_liquid.positions, lj_liquid.box, lj_liquid.temperature, masses=MASS,
                     dt=0.005 * TAU, friction=5.0 / TAU, skin=0.3 * SIGMA, seed=7, dtype=torch.float64,
                     velocities=lj_liquid.velocities, device="cpu")
    temperatures, momenta = [], []
    for _ in range(200):
        sim.run(10)
        temperatures.append(sim.kinetic_temperature())
        momenta.append(sim.total_momentum())
    temperatures = np.array(temperatures)
    blocks = temperatures.reshape(10, -1).mean(1)
    standard_error = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(temperatures.mean() - sim.temperature) < 4 * standard_error + 1e-9, (temperatures.mean(), standard_error)
    ratio = (np.array(momenta) ** 2).mean() / (sim.n_beads * MASS * KB * sim.temperature)
    assert 0.7 < ratio < 1.3, ratio


def mdgrad_convention_rdf(frames, box_length):
    """g(r) as the reference files define it (reduced units, 100 Gaussians of width 0.0258 sigma
    centred on linspace(0.75, 3.3, 100), normalised so that sum_k g_k V_k = V(3.3 sigma sphere)),
    computed from our frames; see /work/shared/reference/README.md for the source."""
    centres = np.linspace(0.75, 3.3, 100)
    width = centres[1] - centres[0]
    edges = np.linspace(0.75, 3.3, 101)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    first, second = np.triu_indices(frames.shape[1], 1)
    counts = np.zeros(100)
    for frame in frames:
        d = frame[second] - frame[first]
        d = np.linalg.norm(d - box_length * np.round(d / box_length), axis=1) / SIGMA
        d = d[d < 3.8]
        counts += np.exp(-0.5 * ((d[:, None] - centres) / width) ** 2).sum(0)
    return centres, counts / counts.sum() * (4 / 3 * np.pi * 3.3**3) / shell


@pytest.mark.slow
def test_lj_rdf_matches_the_published_reference(lj_liquid):
    """rho* = 0.845, T* = 1.0, cutoff 2.5 sigma, 256 beads (as the reference), Langevin
    gamma = 1/tau, dt = 0.005 tau; 150 frames over 15 tau after the 5 tau equilibration.

    The reference RDF is a Gaussian-smeared histogram with its own normalisation, so our frames
    are put through that same estimator before comparing. Bound: RMSE < 0.015 over its 100
    points (measured 0.004; the residual is sampling noise). Our METHOD.md g(r) (0.002 nm bins) has
    its first peak within one reference spacing of the reference's.
    """
    sim = Simulation(lj_liquid.potential, lj_liquid.positions, lj_liquid.box, lj_liquid.temperature, masses=MASS,
                     dt=0.005 * TAU, friction=1.0 / TAU, skin=0.3 * SIGMA, seed=11, dtype=torch.float64,
                     velocities=lj_liquid.velocities, device="cpu")
    frames = []
    for _ in range(150):
        sim.run(20)
        frames.append(sim.positions.numpy().copy())
    frames = np.array(frames)
    reference = np.loadtxt(shared_dir() / "reference" / "lj_rdf" / "rdf_rho0.845_T1.0_dt0.01.csv", delimiter=",")
    r, g = mdgrad_convention_rdf(frames, float(sim.box[0]))
    assert np.allclose(r, reference[0])
    rmse = np.sqrt(np.mean((g - reference[1]) ** 2))
    assert rmse < 0.015, rmse

    from thermocg.diffsim import SmoothObservables, rdf_centres

    plain = SmoothObservables(rdf_smearing=0.0)
    g_plain = plain.rdf(torch.as_tensor(frames), sim.box).numpy()
    r_plain = rdf_centres(plain.rdf_edges(sim.box.numpy())) / SIGMA
    assert abs(r_plain[g_plain.argmax()] - reference[0][reference[1].argmax()]) < (r[1] - r[0])


# --- run_md: outputs, resume, blow-up -------------------------------------------------------------
def small_liquid():
    """108 LJ beads at rho* = 0.6, T* = 1.2, cutoff 2 sigma: cheap, for the I/O tests."""
    positions, box = lj_box(3, 0.6)
    return LennardJones(EPSILON, SIGMA, 2.0 * SIGMA), positions, box, LJ["temperature"](1.2)


def run_small(out, n_steps, guard=None, **kwargs):
    potential, positions, box, temperature = small_liquid()
    options = dict(dt=0.004 * TAU, friction=1.0 / TAU, masses=MASS, frame_interval=20, report_interval=20,
                   checkpoint_interval=100, skin=0.3 * SIGMA, seed=5, dtype=torch.float32, device="cpu")
    options.update(kwargs)
    return run_md(potential, positions, box, temperature, n_steps, trajectory=out / "traj.dcd",
                  topology=out / "top.pdb", thermo=out / "thermo.tsv", checkpoint=out / "state.npz", guard=guard,
                  **options)


def read_run(out):
    traj = mdtraj.load(str(out / "traj.dcd"), top=str(out / "top.pdb"))
    return traj, read_table(out / "thermo.tsv")


def saved_step(path):
    """The step of an MD checkpoint."""
    _, payload = checkpoints.read(path)
    return int(np.load(BytesIO(payload))["step"])


def assert_same_run(a, b):
    (traj_a, thermo_a), (traj_b, thermo_b) = a, b
    assert traj_a.n_frames == traj_b.n_frames
    assert np.array_equal(traj_a.xyz, traj_b.xyz)
    columns = [c for c in thermo_a.columns if c != "ns_per_day"]
    assert thermo_a[columns].equals(thermo_b[columns])


def test_run_md_writes_trajectory_topology_thermo_and_removes_its_checkpoint(tmp_path):
    summary = run_small(tmp_path, 200)
    traj, thermo = read_run(tmp_path)
    potential, positions, box, temperature = small_liquid()
    assert traj.n_frames == 11 and traj.n_atoms == 108 and traj.n_residues == 108
    assert np.allclose(traj.xyz[0], positions, atol=1e-5)  # frame 0 is the start (nm)
    assert np.allclose(traj.unitcell_lengths, box, atol=1e-5)
    assert list(thermo.columns) == ["step", "time_ps", "T_kin_K", "potential_kJ_mol", "kinetic_kJ_mol",
                                    "total_kJ_mol", "momentum_amu_nm_ps", "ns_per_day"]
    assert list(thermo.step) == list(range(0, 201, 20))
    assert np.allclose(thermo.time_ps, thermo.step * 0.004 * TAU)
    assert np.allclose(thermo.total_kJ_mol, thermo.potential_kJ_mol + thermo.kinetic_kJ_mol, rtol=1e-6)
    assert 0.5 * temperature < thermo.T_kin_K.iloc[1:].mean() < 1.5 * temperature
    assert summary["n_frames"] == 11 and summary["resumed_from"] is None
    assert not (tmp_path / "state.npz").exists(), "removed once the outputs are written: a rerun recomputes"
    # unwrapped, continuous: no jump of a box length between frames
    assert np.abs(np.diff(traj.xyz, axis=0)).max() < 0.5 * box[0]


def test_recording_every_step_leaves_the_run_the_same(tmp_path):
    """A run that records every step (the dynamics comparison reads the default's own CG MD runs so)
    follows a run that records every 20th to the bit: the extra checks at the frames read the
    neighbour list's displacement where it would otherwise skip the read only when no rebuild is due."""
    every_step = run_small(tmp_path / "every", 400, frame_interval=1)
    every_20th = run_small(tmp_path / "20th", 400)
    (fine, fine_thermo), (coarse, coarse_thermo) = read_run(tmp_path / "every"), read_run(tmp_path / "20th")
    assert fine.n_frames == 401 and coarse.n_frames == 21
    assert np.array_equal(fine.xyz[::20], coarse.xyz)
    columns = [c for c in coarse_thermo.columns if c != "ns_per_day"]
    assert fine_thermo[columns].equals(coarse_thermo[columns])
    assert every_step["mean_T_kin_K"] == every_20th["mean_T_kin_K"]


def test_mean_kinetic_temperature_leaves_out_the_equilibration(tmp_path):
    """The summary's mean T_kin is that of the production's thermo rows: the equilibration starts
    from the drawn velocities and is left out, as it is left out of the trajectory."""
    summary = run_small(tmp_path, 200, equilibration_steps=100)
    thermo = read_table(tmp_path / "thermo.tsv")
    production = thermo[thermo.step >= 100]
    assert len(production) == 6 and len(thermo) == 11
    assert summary["mean_T_kin_K"] == pytest.approx(production.T_kin_K.mean(), rel=1e-6)  # the table rounds
    assert abs(thermo.T_kin_K.mean() - summary["mean_T_kin_K"]) > 1.0  # K: the equilibration rows differ


class CrashAt(BlowUpGuard):
    """A guard that kills the run (as an exception would) when it reaches a given step."""

    def __init__(self, step):
        super().__init__()
        self.crash_step = step

    def check(self, sim):
        if sim.step == self.crash_step:
            raise KeyboardInterrupt("simulated kill")
        return super().check(sim)


def delete_outputs(out):
    """What Snakemake does before it reruns a job."""
    for name in ("traj.dcd", "top.pdb", "thermo.tsv"):
        (out / name).unlink(missing_ok=True)


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path):
    """Crash at step 250 (checkpoints every 100): the resumed run restarts at 200 with the frames
    and thermo rows of its checkpoint, even though its outputs were deleted, and ends
    bit-identical to a run never stopped."""
    run_small(tmp_path / "whole", 400)
    with pytest.raises(KeyboardInterrupt):
        run_small(tmp_path / "crashed", 400, guard=CrashAt(250))
    assert saved_step(tmp_path / "crashed" / "state.npz") == 200
    delete_outputs(tmp_path / "crashed")
    summary = run_small(tmp_path / "crashed", 400)
    assert summary["resumed_from"] == 200
    assert_same_run(read_run(tmp_path / "whole"), read_run(tmp_path / "crashed"))


def network_simulation():
    """A maker of identical small-network simulations of 256 beads 0.38 nm apart (skips without torch's nn)."""
    nn = pytest.importorskip("thermocg.nn")
    positions, box = lj_box(4, 0.845)

    def simulation():
        torch.manual_seed(0)
        model = nn.CGModel(n_features=8, n_sensitivities=4, n_dense_layers=1, cutoff=0.6, sensitivity_soft_max=0.55,
                           dtype="float64")
        return Simulation(model, positions, box, 300.0, masses=18.0, dt=0.002, friction=5.0, skin=0.1, seed=1,
                          dtype=torch.float64, device="cpu")

    return simulation


def test_an_exact_state_continues_on_its_own_neighbour_list_where_a_rebuild_would_not():
    """DiffSim's windows continue without the rebuild run_md makes at each checkpoint: a state saved
    with exact=True carries the forces and the neighbour list as they are, so a simulation loaded from
    it (a job resumed in another process) goes on bit for bit; rebuilt, the network's sums run over
    the pairs in another order and differ in the last bits."""
    simulation = network_simulation()

    original = simulation()
    original.run(300)
    exact, plain = original.state_dict(exact=True), original.state_dict()
    continued, rebuilt = simulation(), simulation()
    continued.load_state_dict(exact)
    rebuilt.load_state_dict(plain)
    for sim in (original, continued, rebuilt):
        sim.run(200)
    assert torch.equal(continued.positions, original.positions) and torch.equal(continued.forces, original.forces)
    assert continued.force_field.neighbor_list.n_builds == original.force_field.neighbor_list.n_builds
    assert not torch.equal(rebuilt.positions, original.positions)


def test_a_state_keeps_how_cautiously_the_neighbour_list_plans_its_checks():
    """After a late call the list checks more often (its bound_factor grows). A run resumed from a
    checkpoint must plan with the same factor: with a smaller one it can make a late call that the
    run never stopped does not, rebuild at another step, and sum in another order."""
    simulation = network_simulation()

    original = simulation()
    original.run(100)
    original.force_field.neighbor_list.bound_factor = 64.0  # as after six late calls
    state = original.state_dict()
    original.refresh()  # what run_md does at a checkpoint
    resumed = simulation()
    resumed.load_state_dict(state)
    for sim in (original, resumed):
        sim.run(300)
    assert resumed.force_field.neighbor_list.bound_factor == 64.0
    assert torch.equal(resumed.positions, original.positions)


def rewrite_checkpoint(path, **changes):
    """Change entries of an MD checkpoint, keeping its fingerprint."""
    header, payload = checkpoints.read(path)
    state = dict(np.load(BytesIO(payload)), **changes)
    checkpoints.save(path, header["fingerprint"], lambda handle: np.savez(handle, **state))


def test_a_checkpoint_from_another_device_resumes_with_a_fresh_random_stream(tmp_path, caplog):
    """A Slurm retry may land on a CPU node after a GPU attempt: the checkpoint's generator
    state does not fit the other device, so the run resumes with a new stream (and says so)."""
    with pytest.raises(KeyboardInterrupt):
        run_small(tmp_path, 400, guard=CrashAt(250))
    # a CUDA (Philox) generator state: useless on CPU
    rewrite_checkpoint(tmp_path / "state.npz", device="cuda", rng_state=np.zeros(16, dtype=np.uint8))
    with caplog.at_level("WARNING"):
        summary = run_small(tmp_path, 400)
    assert summary["resumed_from"] == 200 and summary["n_steps"] == 400
    assert "not bit-identical" in caplog.text


KILL_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_md import run_small
run_small(Path({out!r}), {n_steps}, checkpoint_interval=200)
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_the_uninterrupted_run(tmp_path):
    """A real kill -9 of a child process right after its first checkpoint (step 200 of 2000)."""
    n_steps = 2000
    run_small(tmp_path / "whole", n_steps, checkpoint_interval=200)
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), n_steps=n_steps)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not (out / "state.npz").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    killed_at = saved_step(out / "state.npz")
    assert 0 < killed_at < n_steps
    delete_outputs(out)
    summary = run_small(out, n_steps, checkpoint_interval=200)
    assert summary["resumed_from"] == killed_at
    assert_same_run(read_run(tmp_path / "whole"), read_run(out))


def test_a_checkpoint_from_another_run_is_set_aside(tmp_path, caplog):
    with pytest.raises(KeyboardInterrupt):
        run_small(tmp_path, 400, guard=CrashAt(150))
    caplog.set_level(logging.INFO)
    summary = run_small(tmp_path, 400, dt=0.002 * TAU)
    assert summary["resumed_from"] is None
    [line] = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert f"dt {0.004 * TAU} (now {0.002 * TAU})" in line
    assert (tmp_path / "state.npz.stale").exists()


class FailingPotential(torch.nn.Module):
    """A potential that raises (as a shape bug or running out of memory would) at its n-th call."""

    def __init__(self, inner, fail_at):
        super().__init__()
        self.inner, self.cutoff, self.fail_at, self.calls = inner, inner.cutoff, fail_at, 0

    def forward(self, positions, i, j, shift, dbeta):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return self.inner(positions, i, j, shift, dbeta)


def test_an_error_inside_a_step_that_is_not_a_blow_up_propagates(tmp_path):
    """The state is fine (finite, beads apart, T_kin sane) when the potential raises at step 5:
    that is a bug, not physics, so it fails the run with its own message."""
    potential, positions, box, temperature = small_liquid()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as error:
        run_md(FailingPotential(potential, fail_at=6), positions, box, temperature, 50, trajectory=tmp_path / "t.dcd",
               topology=tmp_path / "t.pdb", thermo=tmp_path / "thermo.tsv", checkpoint=tmp_path / "state.npz",
               dt=0.004 * TAU, masses=MASS, skin=0.3 * SIGMA, device="cpu")
    assert not isinstance(error.value, BlowUpError)
    assert not (tmp_path / "t_last_good.pdb").exists()


def test_blow_up_raises_naming_the_step_and_saves_the_last_good_frame(tmp_path):
    """Two beads pushed to 0.6 sigma at step 0 explode within a few steps; the guard (every
    step here) stops the run and the last good frame is readable by mdtraj."""
    potential, positions, box, temperature = small_liquid()
    positions = positions.copy()
    positions[1] = positions[0] + [0.6 * SIGMA, 0, 0]
    with pytest.raises(BlowUpError, match=r"blew up at step \d+") as error:
        run_md(potential, positions, box, temperature, 500, trajectory=tmp_path / "traj.dcd",
               topology=tmp_path / "top.pdb", thermo=tmp_path / "thermo.tsv", checkpoint=tmp_path / "state.npz",
               dt=0.004 * TAU, masses=MASS, frame_interval=1, report_interval=1, skin=0.3 * SIGMA,
               guard=BlowUpGuard(min_distance=0.2 * SIGMA, max_temperature_factor=3.0, interval=1), device="cpu")
    blow_up = error.value
    assert blow_up.step > 0 and blow_up.last_good_step == blow_up.step - 1 and blow_up.timestep_ps == 0.004 * TAU
    assert str(blow_up.step) in str(blow_up) and blow_up.reason in str(blow_up)
    last_good = mdtraj.load(str(blow_up.last_good))
    assert last_good.n_atoms == 108 and np.isfinite(last_good.xyz).all()
    saved = np.load(blow_up.last_good.with_suffix(".npz"))
    assert int(saved["step"]) == blow_up.last_good_step
    assert np.allclose(saved["positions"], last_good.xyz[0], atol=1e-4)
    # The outputs hold the good frames only (steps 0 .. last good).
    traj = mdtraj.load(str(tmp_path / "traj.dcd"), top=str(tmp_path / "top.pdb"))
    assert traj.n_frames == blow_up.last_good_step + 1 and np.isfinite(traj.xyz).all()
    assert read_table(tmp_path / "thermo.tsv")["step"].max() == blow_up.last_good_step
    assert not (tmp_path / "state.npz").exists()


def test_cg_topology_has_one_bead_residue_per_molecule():
    topology = cg_topology(5)
    assert topology.n_atoms == topology.n_residues == 5
    assert all(residue.n_atoms == 1 and residue.name == "HOH" for residue in topology.residues)


def test_planned_list_checks_give_the_every_step_trajectory_and_never_miss_a_pair():
    """Water-like LJ at 8 fs (125 beads, the pipeline's CG step and skin): checking the list only
    when Simulation.step_bound says it may have expired gives, bit for bit, the trajectory of a
    check at every step, and at every step the list holds every pair within the cutoff."""
    length = 1.552  # 125 beads of 18 amu at water density
    side = np.arange(5) + 0.5
    positions = np.stack(np.meshgrid(side, side, side, indexing="ij"), -1).reshape(-1, 3) * length / 5
    box = np.full(3, length)
    potential = LennardJones(epsilon=2.0, sigma=0.29, cutoff=0.6)
    planned, every_step = (Simulation(potential, positions, box, 300.0, dt=0.008, friction=1.0, seed=1,
                                      dtype=torch.float64, device="cpu") for _ in range(2))
    every_step.step_bound = None  # Simulation.run then passes no bound: a check at every force call
    reference = NeighborList(potential.cutoff)  # no skin: rebuilt at every call
    for _ in range(300):
        planned.run(1)
        every_step.run(1)
        assert torch.equal(planned.positions, every_step.positions)
        assert torch.equal(planned.velocities, every_step.velocities)
        i, j, shift = planned.force_field.neighbor_list._pairs
        r = (planned.positions[j] - planned.positions[i] + shift).norm(dim=1)
        listed = set(zip(i[r < potential.cutoff].tolist(), j[r < potential.cutoff].tolist()))
        expected = set(zip(*(x.tolist() for x in reference(planned.positions, planned.box)[:2])))
        assert listed == expected
    lists = planned.force_field.neighbor_list, every_step.force_field.neighbor_list
    assert lists[0].n_builds == lists[1].n_builds >= 20
    assert lists[0].n_late == 0
    assert lists[0].n_checks < 0.7 * 300
