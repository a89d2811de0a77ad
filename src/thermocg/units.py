"""Physical constants and unit helpers (OpenMM units: nm, ps, kJ/mol, amu, K)."""

import numpy as np

#: Boltzmann constant in kJ/(mol K) (CODATA 2018 times N_A, as OpenMM uses).
KB = 0.00831446261815324
#: Avogadro's number in 1/mol.
AVOGADRO = 6.02214076e23
#: One g/cm^3 expressed in amu/nm^3.
G_PER_CM3_IN_AMU_PER_NM3 = AVOGADRO * 1e-21
#: Mass of one water molecule (one CG bead), amu.
WATER_MASS = 18.015


def beta(temperature):
    """Inverse temperature 1/(k_B T) in mol/kJ for T in K."""
    temperature = np.asarray(temperature, dtype=float)
    if np.any(temperature <= 0):
        raise ValueError(f"temperature must be > 0 K, got {temperature}")
    return 1.0 / (KB * temperature)


def cubic_box_length(n_molecules, density_g_cm3, molecule_mass=WATER_MASS):
    """Edge (nm) of the cubic box holding n_molecules at the given mass density (g/cm^3)."""
    if n_molecules <= 0 or density_g_cm3 <= 0:
        raise ValueError("n_molecules and density must be positive")
    volume = n_molecules * molecule_mass / (density_g_cm3 * G_PER_CM3_IN_AMU_PER_NM3)
    return volume ** (1.0 / 3.0)
