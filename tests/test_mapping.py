"""COM mapping and mapped forces (METHOD.md, "Mapping")."""

import numpy as np
import openmm
import pytest
from openmm import unit

from thermocg import fg, mapping


def reference_context(model, n_molecules=100, seed=3):
    topology, positions, forcefield = fg.build_water_box(model, n_molecules, 0.997, seed)
    system = fg.create_system(topology, forcefield, cutoff=0.6, ewald_tolerance=1e-6)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.applyConstraints(1e-10)
    context.computeVirtualSites()
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    return context, masses, fg.molecule_index(topology)


def energy(context, positions):
    context.setPositions(positions)
    context.computeVirtualSites()
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


@pytest.mark.parametrize("model", ["spce", "tip4pew"])
def test_mapped_force_is_minus_gradient_for_rigid_translation(model):
    """The mapped force of a rigid molecule is -dU/dR for moving the whole molecule.

    For TIP4P-Ew this also checks that the virtual site's reported force is not counted twice.
    """
    context, masses, index = reference_context(model)
    state = context.getState(getPositions=True, getForces=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    mapped = mapping.mapped_forces(forces[None], masses, index)[0]
    step = 1e-5
    for molecule in (0, 17, 40):
        members = index == molecule
        gradient = []
        for axis in range(3):
            shifted = [positions.copy(), positions.copy()]
            shifted[0][members, axis] += step
            shifted[1][members, axis] -= step
            gradient.append((energy(context, shifted[0]) - energy(context, shifted[1])) / (2 * step))
        np.testing.assert_allclose(mapped[molecule], -np.array(gradient), rtol=1e-4, atol=1e-2)


def test_mapped_forces_sum_to_about_zero():
    context, masses, index = reference_context("spce")
    forces = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    mapped = mapping.mapped_forces(forces[None], masses, index)[0]
    typical = np.linalg.norm(mapped, axis=1).mean()
    assert np.linalg.norm(mapped.sum(axis=0)) < 1e-3 * typical * np.sqrt(len(mapped))


def test_bead_masses_are_molecule_masses():
    _, masses, index = reference_context("tip4pew")
    beads = mapping.bead_masses(masses, index)
    np.testing.assert_allclose(beads, 18.015, atol=2e-3)


def test_centre_of_mass_unwraps_molecules_across_the_boundary():
    box = np.array([[2.0, 2.0, 2.0]])
    # oxygen just inside x = 0, hydrogens wrapped to the far side of the box
    positions = np.array([[[0.01, 1.0, 1.0], [1.95, 1.05, 1.0], [1.97, 0.95, 1.0]]])
    masses = np.array([16.0, 1.0, 1.0])
    index = np.zeros(3, dtype=np.int64)
    com = mapping.centres_of_mass(positions, box, masses, index)[0, 0]
    expected_x = (16 * 0.01 + 1 * (1.95 - 2.0) + 1 * (1.97 - 2.0)) / 18
    assert com[0] == pytest.approx(expected_x)
    assert com[1] == pytest.approx(1.0)
    # a naive average across the boundary would sit near the middle of the box
    assert abs(np.average(positions[0, :, 0], weights=masses) - com[0]) > 0.1


def test_mapping_commutes_with_translation():
    rng = np.random.default_rng(0)
    box = np.full((2, 3), 1.5)
    positions = rng.uniform(0, 1.5, size=(2, 6, 3))
    masses = np.array([16.0, 1.0, 1.0] * 2)
    index = np.repeat([0, 1], 3)
    shift = np.array([0.3, -0.2, 0.1])
    a = mapping.centres_of_mass(positions, box, masses, index)
    b = mapping.centres_of_mass(positions + shift, box, masses, index)
    np.testing.assert_allclose(b, a + shift, atol=1e-12)
