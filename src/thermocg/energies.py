"""Per-molecule shares u_J of the atomistic potential energy (METHOD.md, "Regression targets").

The shares add up to the potential energy OpenMM reports for the same configuration:

- electrostatics (PME): u_J gets 1/2 sum_{i in J} q_i phi_i, where phi_i = dE_elec/dq_i is the
  Ewald potential at site i from every other charge (real space erfc within the cutoff, reciprocal
  space, self term, and the engine's subtraction of the molecule's own excluded pairs). E_elec is a
  quadratic form in the charges, so sum_i 1/2 q_i phi_i = E_elec exactly.
- Lennard-Jones within the cutoff (truncated, or switched if the System says so): half of each
  pair to each partner's molecule.
- the long-range dispersion correction C/V: shared out equally among the molecules.
- NonbondedForce exceptions with a nonzero charge product or epsilon (1-4 pairs of flexible
  molecules), HarmonicBondForce and HarmonicAngleForce terms: split equally among the particles
  involved, so a term inside one molecule belongs wholly to it.

The reciprocal space is by default a smooth PME that mirrors OpenMM's (B-spline order 5, the same
alpha, grid and B-spline moduli), so the sum reproduces the engine's PME energy, discretisation
error included, to rounding. ``reciprocal="ewald"`` uses a converged Ewald k-sum instead: an
independent check, which differs from the engine by the engine's PME error.

Positions hold every particle, virtual sites included and placed, as the engine saves them; they
may be unwrapped (molecules whole). Boxes are orthorhombic, edges in nm.
"""

import sys
import time

import numpy as np
import openmm
from openmm import unit
from scipy.spatial import cKDTree
from scipy.special import erf, erfc

#: Coulomb constant 1/(4 pi eps0) in kJ nm/(mol e^2), the value OpenMM 8.6 uses.
ONE_4PI_EPS0 = 138.93545764438198
#: B-spline order of PME on every OpenMM platform.
PME_ORDER = 5

# Forces that add no potential energy.
_NO_ENERGY_FORCES = tuple(
    getattr(openmm, name)
    for name in (
        "CMMotionRemover",
        "AndersenThermostat",
        "MonteCarloBarostat",
        "MonteCarloAnisotropicBarostat",
        "MonteCarloMembraneBarostat",
        "MonteCarloFlexibleBarostat",
    )
    if hasattr(openmm, name)
)


def bspline_weights(u, order=PME_ORDER):
    """Cardinal B-spline values M_order(u + j), j = 0..order-1, for offsets u in [0, 1).

    Returns shape u.shape + (order,). With t a particle's grid coordinate, weight j belongs to
    grid point floor(t) - j.
    """
    u = np.asarray(u, dtype=float)[..., None]
    x = u + np.arange(order)
    # Start from M_2 (M_2(u) = u, M_2(u + 1) = 1 - u), then
    # M_n(x) = [x M_{n-1}(x) + (n - x) M_{n-1}(x - 1)] / (n - 1).
    w = np.zeros(x.shape)
    w[..., 0] = u[..., 0]
    w[..., 1] = 1.0 - u[..., 0]
    for n in range(3, order + 1):
        previous = np.concatenate([np.zeros_like(w[..., :1]), w[..., :-1]], axis=-1)
        w = (x * w + (n - x) * previous) / (n - 1)
    return w


def bspline_moduli(grid_size, order=PME_ORDER):
    """Squared B-spline moduli |sum_k M(k) exp(2 pi i m k / K)|^2 along one axis, as OpenMM has them.

    For odd orders the modulus vanishes at the Nyquist frequency; OpenMM (and so this function)
    replaces values below 1e-7 by the mean of the two neighbours.
    """
    values = bspline_weights(np.zeros(1), order)[0]  # M(0), M(1), ..., M(order - 1)
    phase = np.exp(2j * np.pi * np.outer(np.arange(grid_size), np.arange(order)) / grid_size)
    moduli = np.abs(phase @ values) ** 2
    for k in range(grid_size):  # sequential and in place, like the engine
        if moduli[k] < 1e-7:
            moduli[k] = 0.5 * (moduli[k - 1] + moduli[(k + 1) % grid_size])
    return moduli


def _reciprocal_kernel(m2, alpha, volume):
    """k exp(-pi^2 m^2 / alpha^2) / (pi V m^2) for squared reciprocal vectors m2 > 0 (1/nm^2)."""
    return ONE_4PI_EPS0 * np.exp(-(np.pi**2) * m2 / alpha**2) / (np.pi * volume * m2)


def _minimum_image(delta, box):
    return delta - box * np.round(delta / box)


def _per_particle(n_particles, weights, *indices):
    """Split weights[t] equally among the particles indices[0][t], indices[1][t], ..."""
    out = np.zeros(n_particles)
    for index in indices:
        out += np.bincount(index, weights=weights / len(indices), minlength=n_particles)
    return out


def _nonbonded_force(system):
    found = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(found) != 1:
        raise NotImplementedError(f"need exactly one NonbondedForce, the System has {len(found)}")
    return found[0]


def _default_box(system):
    vectors = system.getDefaultPeriodicBoxVectors()
    matrix = np.array([v.value_in_unit(unit.nanometer) for v in vectors])
    if np.any(np.abs(matrix - np.diag(np.diag(matrix))) > 0):
        raise NotImplementedError("only orthorhombic boxes are supported")
    return np.diag(matrix).copy()


def _helper_context(system, platform="Reference"):
    """A Context with the System's NonbondedForce only, charges zeroed, twice: with the dispersion
    correction (force group 0) and without it (group 1)."""
    force = _nonbonded_force(system)
    helper = openmm.System()
    for k in range(system.getNumParticles()):
        helper.addParticle(system.getParticleMass(k))
    helper.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    for group, dispersion in ((0, force.getUseDispersionCorrection()), (1, False)):
        copy = openmm.XmlSerializer.clone(force)
        for k in range(copy.getNumParticles()):
            _, sigma, epsilon = copy.getParticleParameters(k)
            copy.setParticleParameters(k, 0.0, sigma, epsilon)
        copy.setUseDispersionCorrection(dispersion)
        copy.setForceGroup(group)
        helper.addForce(copy)
    integrator = openmm.VerletIntegrator(1e-3)
    return openmm.Context(helper, integrator, openmm.Platform.getPlatformByName(platform))


def system_pme_parameters(system, platform="Reference", context=None):
    """(alpha 1/nm, nx, ny, nz) that OpenMM uses for the System's NonbondedForce.

    Parameters stored in the force (setPMEParameters) win; otherwise a Context on ``platform``
    reports them. GPU platforms may round the grid up to FFT-friendly sizes: to mirror their
    energies exactly, pass what their Context reports (getPMEParametersInContext).
    """
    alpha, nx, ny, nz = _nonbonded_force(system).getPMEParameters()
    alpha = alpha.value_in_unit(unit.nanometer**-1)
    if alpha <= 0:
        context = context if context is not None else _helper_context(system, platform)
        alpha, nx, ny, nz = context.getSystem().getForce(0).getPMEParametersInContext(context)
    return float(alpha), int(nx), int(ny), int(nz)


def dispersion_coefficient(system, platform="Reference", context=None):
    """C (kJ/mol nm^3) of the long-range dispersion correction C / V, evaluated by OpenMM itself
    (so the switching function is honoured); 0 when the correction is off."""
    if not _nonbonded_force(system).getUseDispersionCorrection():
        return 0.0
    box = _default_box(system)
    context = context if context is not None else _helper_context(system, platform)
    # Any positions will do (the LJ terms cancel in the difference); a lattice keeps them finite.
    n = system.getNumParticles()
    side = int(np.ceil(n ** (1 / 3)))
    cells = np.stack(np.unravel_index(np.arange(n), (side,) * 3), axis=1)
    context.setPositions((cells + 0.5) / side * box)
    energies = [context.getState(getEnergy=True, groups={g}).getPotentialEnergy() for g in (0, 1)]
    difference = (energies[0] - energies[1]).value_in_unit(unit.kilojoule_per_mole)
    return difference * float(np.prod(box))


class MoleculeEnergies:
    """Per-molecule shares of an OpenMM System's potential energy; build once, call per frame.

    ``molecule_index`` (n_particles,) gives each particle's molecule, 0..N_mol-1.
    ``pme_parameters`` (alpha 1/nm, nx, ny, nz) defaults to :func:`system_pme_parameters`.
    ``reciprocal``: "pme" (mirror the engine) or "ewald" (converged k-sum, for checks).
    ``platform``: the OpenMM platform asked for the PME grid and the dispersion coefficient.
    """

    def __init__(self, system, molecule_index, pme_parameters=None, reciprocal="pme", platform="Reference"):
        if reciprocal not in ("pme", "ewald"):
            raise ValueError(f"reciprocal must be 'pme' or 'ewald', got {reciprocal!r}")
        self.reciprocal = reciprocal
        self.n_particles = system.getNumParticles()
        self.molecule_index = np.asarray(molecule_index, dtype=np.int64)
        if self.molecule_index.shape != (self.n_particles,):
            raise ValueError(f"molecule_index must have shape ({self.n_particles},), got {self.molecule_index.shape}")
        if self.molecule_index.min() < 0 or np.any(np.bincount(self.molecule_index) == 0):
            raise ValueError("molecule_index must use every molecule number 0..N_mol-1")
        self.n_molecules = int(self.molecule_index.max()) + 1

        self._read_bonded(system)
        force = _nonbonded_force(system)
        self._read_nonbonded(force)

        context = None  # one helper Context, only when the engine must be asked
        if pme_parameters is None or force.getUseDispersionCorrection():
            context = _helper_context(system, platform)
        if pme_parameters is None:
            pme_parameters = system_pme_parameters(system, platform, context)
        self.alpha = float(pme_parameters[0])
        self.grid = np.array(pme_parameters[1:], dtype=np.int64)
        self.moduli = [bspline_moduli(int(k)) for k in self.grid]
        self.dispersion_coefficient = dispersion_coefficient(system, platform, context)
        self._kernel_cache = {}

    def _read_nonbonded(self, force):
        if force.getNonbondedMethod() != openmm.NonbondedForce.PME:
            raise NotImplementedError("only NonbondedForce.PME is supported")
        if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
            raise NotImplementedError("NonbondedForce parameter offsets are not supported")
        params = [force.getParticleParameters(k) for k in range(self.n_particles)]
        self.charges = np.array([p[0].value_in_unit(unit.elementary_charge) for p in params])
        self.sigma = np.array([p[1].value_in_unit(unit.nanometer) for p in params])
        self.epsilon = np.array([p[2].value_in_unit(unit.kilojoule_per_mole) for p in params])
        if abs(self.charges.sum()) > 1e-6:
            raise NotImplementedError(f"net charge {self.charges.sum():.3g} e: only neutral systems")
        self.cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
        self.switch = None
        if force.getUseSwitchingFunction():
            self.switch = force.getSwitchingDistance().value_in_unit(unit.nanometer)

        # Every exception removes its pair from the direct-space sum; those with a nonzero charge
        # product or epsilon add their own unscreened pair term.
        exceptions = [force.getExceptionParameters(k) for k in range(force.getNumExceptions())]
        pairs = np.array([(e[0], e[1]) for e in exceptions], dtype=np.int64).reshape(-1, 2)
        self.excluded = np.sort(pairs, axis=1)
        self._excluded_keys = np.sort(self.excluded[:, 0] * self.n_particles + self.excluded[:, 1])
        # Usually every excluded pair lies inside a molecule: then only such pairs need a look-up.
        self._exclusions_intramolecular = bool(
            np.all(self.molecule_index[self.excluded[:, 0]] == self.molecule_index[self.excluded[:, 1]])
        )
        charge_prod = np.array([e[2].value_in_unit(unit.elementary_charge**2) for e in exceptions])
        sigma = np.array([e[3].value_in_unit(unit.nanometer) for e in exceptions])
        epsilon = np.array([e[4].value_in_unit(unit.kilojoule_per_mole) for e in exceptions])
        active = (charge_prod != 0) | (epsilon != 0)
        self.exceptions = (pairs[active], charge_prod[active], sigma[active], epsilon[active])
        self.exceptions_periodic = force.getExceptionsUsePeriodicBoundaryConditions()

    def _read_bonded(self, system):
        """Harmonic bonds and angles as arrays (indices, rest value, force constant, periodic)."""
        bonds, angles = [], []
        for force in system.getForces():
            if isinstance(force, (openmm.NonbondedForce, *_NO_ENERGY_FORCES)):
                continue
            periodic = force.usesPeriodicBoundaryConditions()
            if isinstance(force, openmm.HarmonicBondForce):
                for k in range(force.getNumBonds()):
                    i, j, length, strength = force.getBondParameters(k)
                    length = length.value_in_unit(unit.nanometer)
                    strength = strength.value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2)
                    bonds.append((i, j, length, strength, periodic))
            elif isinstance(force, openmm.HarmonicAngleForce):
                for k in range(force.getNumAngles()):
                    i, j, m, angle, strength = force.getAngleParameters(k)
                    angle = angle.value_in_unit(unit.radian)
                    strength = strength.value_in_unit(unit.kilojoule_per_mole / unit.radian**2)
                    angles.append((i, j, m, angle, strength, periodic))
            else:
                raise NotImplementedError(f"no per-molecule split for {type(force).__name__}")
        self.bonds = [np.array(column) for column in zip(*bonds)]
        self.angles = [np.array(column) for column in zip(*angles)]

    # --- public ---------------------------------------------------------------------------

    def __call__(self, positions, box):
        """u_J (N_mol,) kJ/mol for one frame: positions (n_particles, 3) nm, box (3,) nm."""
        return sum(self.terms(positions, box).values())

    def terms(self, positions, box):
        """The shares split by kind: dict of (N_mol,) arrays, kJ/mol, summing to u_J.

        Keys: electrostatic, lennard_jones, dispersion, exceptions, bonded.
        """
        positions, box = self._check(positions, box)
        phi, lj = self._real_space(positions, box)
        phi += self._reciprocal_potential(positions, box)
        phi += self._exclusion_potential(positions, box)
        phi -= ONE_4PI_EPS0 * 2 * self.alpha / np.sqrt(np.pi) * self.charges  # self term
        per_particle = {
            "electrostatic": 0.5 * self.charges * phi,
            "lennard_jones": lj,
            "exceptions": self._exception_energies(positions, box),
            "bonded": self._bonded_energies(positions, box),
        }
        out = {
            name: np.bincount(self.molecule_index, weights=values, minlength=self.n_molecules)
            for name, values in per_particle.items()
        }
        out["dispersion"] = np.full(self.n_molecules, self.dispersion_coefficient / np.prod(box) / self.n_molecules)
        return out

    # --- pieces ----------------------------------------------------------------------------

    def _check(self, positions, box):
        positions = np.asarray(positions, dtype=float)
        box = np.asarray(box, dtype=float)
        if positions.shape != (self.n_particles, 3):
            raise ValueError(f"positions must have shape ({self.n_particles}, 3), got {positions.shape}")
        if box.shape != (3,) or np.any(box <= 0):
            raise ValueError(f"box must be 3 positive edge lengths (nm), got {box}")
        if 2 * self.cutoff > box.min():
            raise ValueError(f"cutoff {self.cutoff} nm exceeds half the box {box} nm")
        return positions, box

    def _real_space(self, positions, box):
        """Direct-space Ewald potential (kJ/mol/e) and LJ energy per particle (kJ/mol)."""
        # Pairs within the cutoff (minimum image, cutoff < box/2), less the excluded ones.
        wrapped = positions % box
        wrapped[wrapped >= box] = 0.0  # x % L can round up to L for tiny negative x
        pairs = cKDTree(wrapped, boxsize=box).query_pairs(self.cutoff, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        kept = ~self._is_excluded(i, j)
        i, j = i[kept], j[kept]
        r = np.linalg.norm(_minimum_image(wrapped[j] - wrapped[i], box), axis=1)

        screened = ONE_4PI_EPS0 * erfc(self.alpha * r) / r
        n = self.n_particles
        phi = np.bincount(i, screened * self.charges[j], minlength=n)
        phi += np.bincount(j, screened * self.charges[i], minlength=n)

        sigma = 0.5 * (self.sigma[i] + self.sigma[j])
        epsilon = np.sqrt(self.epsilon[i] * self.epsilon[j])
        x6 = (sigma / r) ** 6
        lj = 4 * epsilon * (x6 * x6 - x6)
        if self.switch is not None:
            x = np.clip((r - self.switch) / (self.cutoff - self.switch), 0.0, 1.0)
            lj *= 1 - x**3 * (10 - 15 * x + 6 * x**2)
        return phi, _per_particle(n, lj, i, j)

    def _is_excluded(self, i, j):
        out = np.zeros(len(i), dtype=bool)
        if len(self._excluded_keys) == 0:
            return out
        if self._exclusions_intramolecular:
            candidates = np.flatnonzero(self.molecule_index[i] == self.molecule_index[j])
        else:
            candidates = np.arange(len(i))
        i, j = i[candidates], j[candidates]
        keys = np.minimum(i, j) * self.n_particles + np.maximum(i, j)
        where = np.searchsorted(self._excluded_keys, keys).clip(max=len(self._excluded_keys) - 1)
        out[candidates] = self._excluded_keys[where] == keys
        return out

    def _exclusion_potential(self, positions, box):
        """The engine subtracts the reciprocal-space interaction of excluded pairs."""
        a, b = self.excluded[:, 0], self.excluded[:, 1]
        r = np.linalg.norm(_minimum_image(positions[b] - positions[a], box), axis=1)
        # erf(alpha r)/r -> 2 alpha/sqrt(pi) for coincident sites
        safe = np.where(r > 1e-12, r, 1.0)
        kernel = np.where(r > 1e-12, erf(self.alpha * safe) / safe, 2 * self.alpha / np.sqrt(np.pi))
        kernel *= -ONE_4PI_EPS0
        phi = np.bincount(a, kernel * self.charges[b], minlength=self.n_particles)
        phi += np.bincount(b, kernel * self.charges[a], minlength=self.n_particles)
        return phi

    def _reciprocal_potential(self, positions, box):
        if self.reciprocal == "pme":
            return self._pme_potential(positions, box)
        return self._ewald_potential(positions, box)

    def _pme_kernel(self, box):
        """Influence function on the rfft half grid, cached per box."""
        key = tuple(box)
        if key not in self._kernel_cache:
            nx, ny, nz = self.grid
            mx = np.fft.fftfreq(nx, 1.0 / nx) / box[0]
            my = np.fft.fftfreq(ny, 1.0 / ny) / box[1]
            mz = np.arange(nz // 2 + 1) / box[2]
            m2 = mx[:, None, None] ** 2 + my[None, :, None] ** 2 + mz[None, None, :] ** 2
            bx, by, bz = self.moduli
            moduli = bx[:, None, None] * by[None, :, None] * bz[None, None, : nz // 2 + 1]
            m2[0, 0, 0] = 1.0  # the m = 0 term is dropped (neutral system)
            kernel = _reciprocal_kernel(m2, self.alpha, np.prod(box)) / moduli
            kernel[0, 0, 0] = 0.0
            self._kernel_cache = {key: kernel}  # boxes rarely change: keep one
        return self._kernel_cache[key]

    def _pme_potential(self, positions, box):
        """Reciprocal potential at each site by smooth PME; 1/2 q.phi is the engine's E_recip."""
        grid = self.grid
        t = (positions / box) % 1.0 * grid
        base = np.floor(t).astype(np.int64)
        weights = bspline_weights(t - base)  # (n, 3, order)
        points = (base[:, :, None] - np.arange(PME_ORDER)) % grid[None, :, None]  # (n, 3, order)
        flat = (
            points[:, 0, :, None, None] * grid[1] + points[:, 1, None, :, None]
        ) * grid[2] + points[:, 2, None, None, :]
        w = weights[:, 0, :, None, None] * weights[:, 1, None, :, None] * weights[:, 2, None, None, :]

        n_grid = int(np.prod(grid))
        charge_grid = np.bincount(flat.ravel(), (self.charges[:, None, None, None] * w).ravel(), minlength=n_grid)
        spectrum = np.fft.rfftn(charge_grid.reshape(grid)) * self._pme_kernel(box)
        # Parseval: E = 1/2 sum_m kernel |Q^(m)|^2 = 1/2 sum_k Q(k) Phi(k) with this Phi.
        potential_grid = np.fft.irfftn(spectrum, s=tuple(grid), axes=(0, 1, 2)).ravel() * n_grid
        return (potential_grid[flat] * w).sum(axis=(1, 2, 3))

    def _ewald_potential(self, positions, box, chunk=512):
        """Reciprocal potential at each site by an Ewald k-sum converged to ~1e-15 relative."""
        m_max = 6.0 * self.alpha / np.pi  # exp(-pi^2 m^2 / alpha^2) < exp(-36) beyond
        n_max = np.ceil(m_max * box).astype(int)
        axes = [np.arange(-n, n + 1) for n in n_max]
        n = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        # Half of k-space: m and -m contribute equally.
        half = (n[:, 0] > 0) | ((n[:, 0] == 0) & (n[:, 1] > 0)) | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))
        m2 = ((n / box) ** 2).sum(axis=1)
        keep = half & (m2 <= m_max**2)
        n, m2 = n[keep], m2[keep]
        coefficient = 2 * _reciprocal_kernel(m2, self.alpha, np.prod(box))

        # exp(2 pi i n_d x_d / L_d) per axis, tabulated for n_d in -n_max..n_max
        phases = [np.exp(2j * np.pi * positions[:, d, None] / box[d] * axes[d]) for d in range(3)]
        phi = np.zeros(self.n_particles)
        for start in range(0, len(n), chunk):
            part = n[start : start + chunk] + n_max  # indices into the tables
            waves = phases[0][:, part[:, 0]] * phases[1][:, part[:, 1]] * phases[2][:, part[:, 2]]
            structure = self.charges @ waves  # S(m) = sum_j q_j exp(2 pi i m.r_j)
            phi += (waves.conj() * (coefficient[start : start + chunk] * structure)).real.sum(axis=1)
        return phi

    def _exception_energies(self, positions, box):
        pairs, charge_prod, sigma, epsilon = self.exceptions
        if len(pairs) == 0:
            return np.zeros(self.n_particles)
        delta = positions[pairs[:, 1]] - positions[pairs[:, 0]]
        if self.exceptions_periodic:
            delta = _minimum_image(delta, box)
        r = np.linalg.norm(delta, axis=1)
        x6 = (sigma / r) ** 6
        energy = ONE_4PI_EPS0 * charge_prod / r + 4 * epsilon * (x6 * x6 - x6)
        return _per_particle(self.n_particles, energy, pairs[:, 0], pairs[:, 1])

    def _bonded_energies(self, positions, box):
        out = np.zeros(self.n_particles)
        if self.bonds:
            i, j, length, strength, periodic = self.bonds
            delta = positions[j] - positions[i]
            delta = np.where(periodic[:, None], _minimum_image(delta, box), delta)
            energy = 0.5 * strength * (np.linalg.norm(delta, axis=1) - length) ** 2
            out += _per_particle(self.n_particles, energy, i, j)
        if self.angles:
            i, j, k, angle, strength, periodic = self.angles
            a, b = positions[i] - positions[j], positions[k] - positions[j]
            a = np.where(periodic[:, None], _minimum_image(a, box), a)
            b = np.where(periodic[:, None], _minimum_image(b, box), b)
            cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            energy = 0.5 * strength * (np.arccos(np.clip(cosine, -1.0, 1.0)) - angle) ** 2
            out += _per_particle(self.n_particles, energy, i, j, k)
        return out


def molecule_energies(positions, box, system, molecule_index, **options):
    """u_J (N_mol,) kJ/mol for one frame; sum_J u_J is OpenMM's potential energy.

    positions (n_particles, 3) nm incl. virtual sites, box (3,) nm; options go to
    :class:`MoleculeEnergies`. For many frames use :func:`frames_molecule_energies`.
    """
    return MoleculeEnergies(system, molecule_index, **options)(positions, box)


def frames_molecule_energies(positions, box, system, molecule_index, progress=False, **options):
    """u_J (F, N_mol) kJ/mol for frames: positions (F, n_particles, 3) nm, box (F, 3) nm.

    ``progress`` prints a line to stderr about every tenth of the frames.
    """
    positions = np.asarray(positions, dtype=float)
    box = np.asarray(box, dtype=float)
    if positions.ndim != 3 or box.shape != (len(positions), 3):
        raise ValueError(f"need positions (F, n, 3) and box (F, 3), got {positions.shape} and {box.shape}")
    shares = MoleculeEnergies(system, molecule_index, **options)
    out = np.empty((len(positions), shares.n_molecules))
    start = time.perf_counter()
    every = max(1, len(positions) // 10)
    for f in range(len(positions)):
        out[f] = shares(positions[f], box[f])
        if progress and ((f + 1) % every == 0 or f + 1 == len(positions)):
            elapsed = time.perf_counter() - start
            message = f"molecule energies: {f + 1}/{len(positions)} frames, {elapsed / (f + 1):.3f} s/frame"
            print(message, file=sys.stderr, flush=True)
    return out


def frames_file_energies(frames_path, system_path):
    """u_J (F, N_mol) for a sampled frame file and its serialized System; also the worst relative
    mismatch between sum_J u_J and the recorded potential energy (a check worth logging)."""
    from thermocg import io

    frames = io.load_frames(frames_path)
    with open(system_path) as handle:
        system = openmm.XmlSerializer.deserialize(handle.read())
    shares = frames_molecule_energies(frames["positions"], frames["box"], system, frames["molecule_index"], progress=True)
    mismatch = np.abs(shares.sum(axis=1) - frames["potential_energy"]) / np.abs(frames["potential_energy"])
    return shares, float(mismatch.max())
