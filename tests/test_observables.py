"""Observables: RDF, ADF, MSD and diffusion against independent paths and known answers."""

import subprocess
import sys

import mdtraj
import numpy as np
import pytest

from thermocg import observables
from thermocg.mapping import minimum_image


def test_pairs_are_every_pair_within_the_cutoff_with_its_minimum_image_vector():
    rng = np.random.default_rng(5)
    box = np.array([1.9, 2.1, 2.0])
    # wrapped or not, and a coordinate a hair below zero (np.mod rounds it up to the box edge)
    points = rng.uniform(-1.0, 3.0, size=(120, 3))
    points[0] = [-1e-17, 0.5, 0.5]
    i, j, vectors = observables._half_pairs(points, box, 0.7)
    everything = minimum_image(points[None, :] - points[:, None], box)
    expected = {(a, b) for a, b in zip(*np.nonzero(np.linalg.norm(everything, axis=2) < 0.7)) if a < b}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected)
    np.testing.assert_allclose(vectors, everything[i, j], atol=1e-12)


def test_analysis_modules_do_not_import_torch():
    """The observables jobs (41 of the default run's 141) load none of torch's 2.5 s."""
    script = "import sys; from thermocg import io, logs, mapping, observables, transfer; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_rdf_of_ideal_gas_is_one():
    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 3.0, size=(40, 400, 3))
    r, g = observables.rdf(positions, np.full((40, 3), 3.0), bin_width=0.05)
    assert r[-1] < 1.5
    # Poisson noise of each bin is about 1/sqrt(expected pair count); compare over outer bins
    assert np.mean(g[r > 0.5]) == pytest.approx(1.0, abs=0.01)
    assert np.abs(g[r > 0.5] - 1).max() < 0.08


def test_rdf_matches_mdtraj():
    rng = np.random.default_rng(2)
    length = 2.0
    positions = rng.uniform(0, length, size=(5, 150, 3))
    r, g = observables.rdf(positions, np.full((5, 3), length), bin_width=0.01)
    topology = mdtraj.Topology()
    chain = topology.add_chain()
    for _ in range(150):
        topology.add_atom("W", mdtraj.element.virtual, topology.add_residue("HOH", chain))
    trajectory = mdtraj.Trajectory(positions, topology, unitcell_lengths=np.full((5, 3), length), unitcell_angles=np.full((5, 3), 90.0))
    pairs = topology.select_pairs("all", "all")
    r_md, g_md = mdtraj.compute_rdf(trajectory, pairs, r_range=(0.0, 1.0), bin_width=0.01)
    np.testing.assert_allclose(r, r_md, atol=1e-6)
    np.testing.assert_allclose(g, g_md, rtol=1e-4, atol=1e-4)


def test_adf_known_angles_and_normalisation():
    # A bead with three neighbours at 90 degrees to each other: angles are 90, 90, 90.
    box = np.full((1, 3), 5.0)
    centre = np.array([2.5, 2.5, 2.5])
    neighbours = centre + 0.3 * np.eye(3)
    far = np.array([[0.5, 0.5, 0.5]])
    positions = np.concatenate([centre[None], neighbours, far])[None]
    theta, p = observables.adf(positions, box, r_shell=0.33, bin_width_deg=1.0)
    assert np.sum(p) * 1.0 == pytest.approx(1.0)
    # neighbours also see each other at 0.42 nm > shell: only the centre's three angles count
    assert theta[np.argmax(p)] == pytest.approx(89.5) or theta[np.argmax(p)] == pytest.approx(90.5)
    assert p.max() == pytest.approx(1.0)


def test_adf_bins_a_width_that_does_not_divide_180_evenly_and_normalises_on_them():
    rng = np.random.default_rng(5)
    positions = rng.uniform(0, 2.0, size=(2, 300, 3))
    theta, p = observables.adf(positions, np.full((2, 3), 2.0), r_shell=0.4, bin_width_deg=7.0)
    width = 180.0 / 26  # 7 deg rounded to the nearest divisor of 180
    np.testing.assert_allclose(np.diff(theta), width)
    assert theta[0] == pytest.approx(width / 2) and theta[-1] == pytest.approx(180 - width / 2)
    assert np.sum(p) * width == pytest.approx(1.0)


def test_adf_of_ideal_gas_is_sine_shaped():
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 2.0, size=(10, 600, 3))
    theta, p = observables.adf(positions, np.full((10, 3), 2.0), r_shell=0.4, bin_width_deg=10.0)
    expected = np.sin(np.radians(theta)) / np.sum(np.sin(np.radians(theta))) / 10.0
    np.testing.assert_allclose(p, expected, atol=0.1 * expected.max())


def test_msd_and_diffusion_of_a_random_walk():
    rng = np.random.default_rng(4)
    dt, diffusion, length = 0.1, 0.05, 3.0  # ps, nm^2/ps, nm
    steps = rng.normal(scale=np.sqrt(2 * diffusion * dt), size=(400, 300, 3))
    unwrapped = np.cumsum(steps, axis=0)
    wrapped = np.mod(unwrapped, length)
    time = dt * np.arange(400)
    lag, msd = observables.msd(wrapped, np.full((400, 3), length), time)
    direct = [np.mean(np.sum((unwrapped[k:] - unwrapped[: 400 - k]) ** 2, axis=-1)) for k in (0, 1, 50, 200)]
    np.testing.assert_allclose(msd[[0, 1, 50, 200]], direct, rtol=1e-9, atol=1e-12)
    fit = observables.diffusion_coefficient(lag, msd, 1.0, 10.0)
    assert fit["D_nm2_per_ps"] == pytest.approx(diffusion, rel=0.05)


def test_diffusion_rejects_empty_window():
    with pytest.raises(ValueError, match="fewer than 2"):
        observables.diffusion_coefficient(np.arange(5.0), np.arange(5.0), 10.0, 20.0)


def test_energy_statistics():
    stats = observables.energy_statistics(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), n_molecules=2)
    assert stats["mean_kJ_per_mol"] == 3.0
    assert stats["mean_per_molecule_kJ_per_mol"] == 1.5
    assert stats["sem_kJ_per_mol"] == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
