"""Per-molecule energy shares (thermocg.energies) against OpenMM on small water boxes."""

import functools

import numpy as np
import openmm
import pytest
from openmm import app, unit

from thermocg.energies import (
    MoleculeEnergies,
    bspline_moduli,
    bspline_weights,
    frames_molecule_energies,
    molecule_energies,
)

FORCE_FIELDS = {"spce": "spce.xml", "tip4pew": "tip4pew.xml"}  # 3-site, and 4-site with a virtual site
EDGE = 1.6  # nm: about 130 waters
CUTOFF = 0.75  # nm, below EDGE / 2


@functools.cache
def liquid(model):
    """(topology, positions (n, 3) nm incl. virtual sites) of a briefly relaxed water box, the same
    on every run."""
    forcefield = app.ForceField(FORCE_FIELDS[model])
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, model=model, boxSize=openmm.Vec3(EDGE, EDGE, EDGE) * unit.nanometer)
    system, _ = make_system(model, topology=modeller.topology)
    # The solvent box has close contacts across its faces. Short, strongly damped Langevin steps
    # remove them reproducibly (OpenMM's minimiser does not give the same result on every run,
    # which once made the dimer test below pick a weakly bound pair).
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 10 / unit.picosecond, 0.5 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1", "DeterministicForces": "true"})
    context.setPositions(modeller.positions)
    context.computeVirtualSites()
    context.applyConstraints(1e-8)
    integrator.step(200)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return modeller.topology, np.array(positions)


def make_system(model, topology=None, tolerance=5e-4, rigid=True, dispersion=True, switch=None, cutoff=CUTOFF):
    """(System, molecule_index) for the model's liquid box (or the given topology)."""
    topology = topology if topology is not None else liquid(model)[0]
    forcefield = app.ForceField(FORCE_FIELDS[model])
    system = forcefield.createSystem(
        topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer, rigidWater=rigid
    )
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.setEwaldErrorTolerance(tolerance)
    nonbonded.setUseDispersionCorrection(dispersion)
    if switch is not None:
        nonbonded.setUseSwitchingFunction(True)
        nonbonded.setSwitchingDistance(switch)
    for force in system.getForces():
        force.setForceGroup(0 if isinstance(force, openmm.NonbondedForce) else 1)
    molecule_index = np.array([atom.residue.index for atom in topology.atoms()])
    return system, molecule_index


def reference_context(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context


def energy(context, groups=-1):
    state = context.getState(getEnergy=True, groups=groups)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def box_of(system):
    return np.array([v[i].value_in_unit(unit.nanometer) for i, v in enumerate(system.getDefaultPeriodicBoxVectors())])


def pme_parameters(system, context):
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return nonbonded.getPMEParametersInContext(context)


# --- the shares add up to the engine's energy -------------------------------------------------


@pytest.mark.parametrize("model", sorted(FORCE_FIELDS))
@pytest.mark.parametrize("reciprocal", ["pme", "ewald"])
def test_sum_equals_openmm_energy(model, reciprocal):
    # The OpenMM reference runs with Ewald error tolerance 1e-6 (default 5e-4) so that its PME is
    # close to the exact Ewald sum that the "ewald" route computes.
    system, molecule_index = make_system(model, tolerance=1e-6)
    positions = liquid(model)[1]
    context = reference_context(system, positions)
    shares = MoleculeEnergies(system, molecule_index, pme_parameters(system, context), reciprocal=reciprocal)
    u = shares(positions, box_of(system))
    assert u.shape == (molecule_index.max() + 1,)
    assert u.sum() == pytest.approx(energy(context), rel=1e-4)
    if reciprocal == "ewald":  # independent route: agrees far better than the 1e-4 asked for
        assert u.sum() == pytest.approx(energy(context), rel=1e-7)


@pytest.mark.parametrize("model", sorted(FORCE_FIELDS))
def test_pme_mirrors_engine_at_default_tolerance(model):
    # Same alpha, grid and B-spline moduli as OpenMM: even its PME error is reproduced.
    system, molecule_index = make_system(model)
    positions = liquid(model)[1]
    u = molecule_energies(positions, box_of(system), system, molecule_index)
    assert u.sum() == pytest.approx(energy(reference_context(system, positions)), rel=1e-10)


@pytest.mark.parametrize("model", sorted(FORCE_FIELDS))
def test_each_share_is_half_the_energy_derivative_in_the_molecule_scale(model):
    # Independent per-molecule check with the engine: scale molecule J's charges by s and its LJ
    # epsilons by s^2. Then E(s) is quadratic in s with dE/ds(1) = 2 u_J (dispersion correction
    # off), and the central difference with step 1 is exact: 2 u_J = (E(2) - E(0)) / 2.
    system, molecule_index = make_system(model, dispersion=False)
    positions = liquid(model)[1]
    context = reference_context(system, positions)
    u = MoleculeEnergies(system, molecule_index, pme_parameters(system, context))(positions, box_of(system))
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    original = [nonbonded.getParticleParameters(k) for k in range(system.getNumParticles())]
    for molecule in (0, len(u) // 2, len(u) - 1):
        scaled = []
        for scale in (2.0, 0.0):
            for k in np.flatnonzero(molecule_index == molecule):
                charge, sigma, epsilon = original[k]
                nonbonded.setParticleParameters(int(k), charge * scale, sigma, epsilon * scale**2)
            nonbonded.updateParametersInContext(context)
            scaled.append(energy(context))
        for k in np.flatnonzero(molecule_index == molecule):
            nonbonded.setParticleParameters(int(k), *original[k])
        nonbonded.updateParametersInContext(context)
        assert u[molecule] == pytest.approx((scaled[0] - scaled[1]) / 4, abs=1e-5)


def test_dispersion_correction_is_shared_equally():
    positions = liquid("spce")[1]
    with_correction, molecule_index = make_system("spce", dispersion=True)
    without, _ = make_system("spce", dispersion=False)
    correction = energy(reference_context(with_correction, positions)) - energy(reference_context(without, positions))
    shares = MoleculeEnergies(with_correction, molecule_index).terms(positions, box_of(with_correction))
    n_molecules = molecule_index.max() + 1
    assert np.allclose(shares["dispersion"], correction / n_molecules, rtol=1e-9, atol=0)
    assert correction < 0


def test_switching_function_is_honoured():
    system, molecule_index = make_system("spce", switch=0.6)
    positions = liquid("spce")[1]
    u = molecule_energies(positions, box_of(system), system, molecule_index)
    assert u.sum() == pytest.approx(energy(reference_context(system, positions)), rel=1e-10)


def test_flexible_water_bond_and_angle_terms():
    system, molecule_index = make_system("spce", rigid=False)
    # Distort the rigid geometry so that bonds and angles carry energy.
    positions = liquid("spce")[1] + np.random.default_rng(1).normal(0.0, 0.003, liquid("spce")[1].shape)
    context = reference_context(system, positions)
    terms = MoleculeEnergies(system, molecule_index).terms(positions, box_of(system))
    assert terms["bonded"].sum() == pytest.approx(energy(context, groups={1}), rel=1e-10)
    assert np.all(terms["bonded"] > 0)
    assert sum(terms.values()).sum() == pytest.approx(energy(context), rel=1e-10)


def test_nonbonded_exceptions_with_energy():
    # Water has only zeroed exceptions; give one intramolecular pair (a 1-4-like term) and one
    # pair of neighbouring molecules an unscreened Coulomb + LJ term of their own.
    system, molecule_index = make_system("spce")
    positions = liquid("spce")[1]
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    k = next(k for k in range(nonbonded.getNumExceptions()) if set(nonbonded.getExceptionParameters(k)[:2]) == {0, 1})
    nonbonded.setExceptionParameters(k, 0, 1, -0.2, 0.2, 0.3)
    oxygens = positions[::3]
    neighbour = int(np.argsort(np.linalg.norm(oxygens - oxygens[0], axis=1))[1])
    nonbonded.addException(0, 3 * neighbour, 0.3, 0.3, 0.5)
    u = MoleculeEnergies(system, molecule_index).terms(positions, box_of(system))
    assert sum(u.values()).sum() == pytest.approx(energy(reference_context(system, positions)), rel=1e-10)
    assert u["exceptions"][0] != 0 and u["exceptions"][neighbour] != 0


# --- symmetries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(FORCE_FIELDS))
def test_translation_invariance(model):
    system, molecule_index = make_system(model)
    positions, box = liquid(model)[1], box_of(system)
    shift = np.array([0.37, -1.21, 2.9])  # more than a box edge: unwrapped input is fine
    exact = MoleculeEnergies(system, molecule_index, reciprocal="ewald")
    np.testing.assert_allclose(exact(positions + shift, box), exact(positions, box), rtol=0, atol=1e-8)
    # Smooth PME is translation invariant only up to its discretisation error.
    pme = MoleculeEnergies(system, molecule_index)
    np.testing.assert_allclose(pme(positions + shift, box), pme(positions, box), rtol=0, atol=0.02)


def test_permutation_equivariance():
    system, molecule_index = make_system("tip4pew")
    positions, box = liquid("tip4pew")[1], box_of(system)
    shares = MoleculeEnergies(system, molecule_index)
    u = shares(positions, box)
    n_molecules, sites = len(u), len(positions) // len(u)
    order = np.random.default_rng(2).permutation(n_molecules)
    # All molecules have the same parameters: reorder whole molecules in the coordinates ...
    permuted = positions.reshape(n_molecules, sites, 3)[order].reshape(-1, 3)
    np.testing.assert_allclose(shares(permuted, box), u[order], rtol=0, atol=1e-9)
    # ... or relabel the molecules.
    relabelled = np.argsort(order)[molecule_index]
    relabelled_shares = MoleculeEnergies(system, relabelled)(positions, box)
    np.testing.assert_allclose(relabelled_shares[relabelled[::sites]], u, rtol=0, atol=1e-9)


# --- physics -------------------------------------------------------------------------------------


def test_liquid_shares_are_physical():
    system, molecule_index = make_system("spce")
    positions = liquid("spce")[1]
    u = molecule_energies(positions, box_of(system), system, molecule_index)
    total = energy(reference_context(system, positions))
    assert u.mean() == pytest.approx(total / len(u), rel=1e-10)
    # A minimised SPC/E liquid: about -45 kJ/mol per molecule, every molecule bound.
    assert -60 < u.mean() < -35
    assert np.all(u < 0) and u.std() > 1.0


def dimer_energies(model, topology, positions, a, b):
    """Molecules a and b of the liquid alone in a 3 nm box: (u from MoleculeEnergies, energy of
    each molecule alone (the other's charges and LJ switched off), their interaction), kJ/mol."""
    molecule_index = np.array([atom.residue.index for atom in topology.atoms()])
    pair = np.concatenate([positions[molecule_index == a], positions[molecule_index == b]])
    pair += 1.5 - pair.mean(axis=0)
    modeller = app.Modeller(topology, positions * unit.nanometer)
    modeller.delete([r for r in topology.residues() if r.index not in (a, b)])
    modeller.topology.setPeriodicBoxVectors([openmm.Vec3(*row) for row in np.eye(3) * 3.0] * unit.nanometer)
    system, index = make_system(model, topology=modeller.topology, dispersion=False, cutoff=1.2)
    context = reference_context(system, pair)
    u = MoleculeEnergies(system, index, pme_parameters(system, context))(pair, np.full(3, 3.0))

    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    alone = []
    for ghost in (1, 0):  # energy of molecule 0 alone, then of molecule 1 alone
        saved = {}
        for k in np.flatnonzero(index == ghost):
            saved[k] = nonbonded.getParticleParameters(int(k))
            nonbonded.setParticleParameters(int(k), 0.0, saved[k][1], 0.0)
        nonbonded.updateParametersInContext(context)
        alone.append(energy(context))
        for k, parameters in saved.items():
            nonbonded.setParticleParameters(int(k), *parameters)
        nonbonded.updateParametersInContext(context)
    return u, np.array(alone), energy(context) - sum(alone)


@pytest.mark.parametrize("model", sorted(FORCE_FIELDS))
def test_dimer_share_is_own_energy_plus_half_the_interaction(model):
    # Electrostatics and LJ are pair sums over molecules, so for two molecules alone in a large box
    # u_A = E_A + E_AB / 2 exactly, where E_A is A's energy with B switched off (its own self,
    # exclusion and periodic-image terms) and E_AB the interaction. Checked on the six pairs of
    # the liquid with the shortest intermolecular O...H distances; the most strongly bound of
    # them must be a real hydrogen bond, so that the interaction being halved is large. (The
    # single closest pair is not always bound: compressed contacts can be repulsive.)
    topology, positions = liquid(model)
    molecule_index = np.array([atom.residue.index for atom in topology.atoms()])
    symbols = np.array([atom.element.symbol if atom.element is not None else "" for atom in topology.atoms()])
    oxygens, hydrogens = np.flatnonzero(symbols == "O"), np.flatnonzero(symbols == "H")
    distance = np.linalg.norm(positions[hydrogens][:, None] - positions[oxygens][None], axis=-1)
    distance[molecule_index[hydrogens][:, None] == molecule_index[oxygens][None]] = np.inf
    interactions = []
    for flat in np.argsort(distance, axis=None)[:6]:
        h, o = np.unravel_index(flat, distance.shape)
        a, b = sorted((molecule_index[hydrogens[h]], molecule_index[oxygens[o]]))
        u, alone, interaction = dimer_energies(model, topology, positions, a, b)
        assert u == pytest.approx(alone + interaction / 2, abs=1e-6)
        # A lone neutral molecule hardly feels its periodic images: the self and exclusion terms
        # (hundreds of kJ/mol each) cancel inside the molecule's own share.
        assert np.all(np.abs(alone) < 0.5)
        interactions.append(interaction)
    assert min(interactions) < -10, interactions  # hydrogen-bonded neighbours among them


# --- API -----------------------------------------------------------------------------------------


def test_frames_match_single_frames_and_report_progress(capsys):
    system, molecule_index = make_system("spce")
    positions, box = liquid("spce")[1], box_of(system)
    frames = np.stack([positions, positions + 0.1])
    out = frames_molecule_energies(frames, np.stack([box, box]), system, molecule_index, progress=True)
    shares = MoleculeEnergies(system, molecule_index)
    np.testing.assert_allclose(out, [shares(frame, box) for frame in frames], rtol=0, atol=1e-10)
    assert "2/2 frames" in capsys.readouterr().err


def test_rejects_what_it_cannot_split():
    system, molecule_index = make_system("spce")
    positions = liquid("spce")[1]
    with pytest.raises(ValueError, match="molecule_index"):
        MoleculeEnergies(system, molecule_index[:-1])
    with pytest.raises(ValueError, match="half the box"):
        MoleculeEnergies(system, molecule_index)(positions, np.full(3, 1.2))
    custom, _ = make_system("spce")
    custom.addForce(openmm.CustomExternalForce("x"))
    with pytest.raises(NotImplementedError, match="CustomExternalForce"):
        MoleculeEnergies(custom, molecule_index)
    cutoff_only, _ = make_system("spce")
    next(f for f in cutoff_only.getForces() if isinstance(f, openmm.NonbondedForce)).setNonbondedMethod(
        openmm.NonbondedForce.CutoffPeriodic
    )
    with pytest.raises(NotImplementedError, match="PME"):
        MoleculeEnergies(cutoff_only, molecule_index)


def test_bspline_helpers():
    weights = bspline_weights(np.linspace(0, 0.999, 7))
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    moduli = bspline_moduli(18)
    np.testing.assert_allclose(moduli[1:], moduli[1:][::-1])  # |b(m)| = |b(-m)|
    assert moduli[0] == pytest.approx(1.0) and np.all(moduli > 1e-7)  # Nyquist zero patched
