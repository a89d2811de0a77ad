"""Centre-of-mass CG mapping: one bead per molecule, mapped forces (METHOD.md, "Mapping").

Beads sit at the molecule's centre of mass, computed from the molecule made whole first (minimum
image relative to its first particle), never averaged across a periodic boundary. The mapped force
is the sum of the forces on the molecule's real atoms. Virtual sites (TIP4P-like M) are excluded
on purpose: OpenMM reports the force on a virtual site *and* has already spread it onto the real
atoms, so adding it again would double-count it (checked against finite differences in the tests).
Constraint forces are internal to a rigid molecule and cancel in the sum.
"""

import numpy as np


def minimum_image(displacement, box):
    """Wrap displacement vectors (..., 3) into the orthorhombic box (..., 3) centred on zero."""
    return displacement - box * np.round(displacement / box)


def make_molecules_whole(positions, box, molecule_index):
    """Positions (F, n, 3) with every molecule's particles placed next to its first particle."""
    positions = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)[:, None, :]
    first = np.unique(molecule_index, return_index=True)[1]
    anchor = positions[:, first[molecule_index], :]
    return anchor + minimum_image(positions - anchor, box)


def centres_of_mass(positions, box, masses, molecule_index):
    """Bead positions (F, N, 3): mass-weighted centre of each whole molecule, nm."""
    whole = make_molecules_whole(positions, box, molecule_index)
    n_molecules = molecule_index.max() + 1
    weighted = np.zeros((whole.shape[0], n_molecules, 3))
    np.add.at(weighted, (slice(None), molecule_index), whole * masses[None, :, None])
    return weighted / bead_masses(masses, molecule_index)[None, :, None]


def bead_masses(masses, molecule_index):
    """Mass of every bead (N,), amu."""
    return np.bincount(molecule_index, weights=masses)


def mapped_forces(forces, masses, molecule_index):
    """Force on every bead (F, N, 3), kJ/(mol nm): sum over the molecule's real (massive) atoms."""
    real = masses > 0
    n_molecules = molecule_index.max() + 1
    total = np.zeros((forces.shape[0], n_molecules, 3))
    np.add.at(total, (slice(None), molecule_index[real]), forces[:, real, :])
    return total


def map_frames(fg_frames):
    """CG frame dict (see :mod:`thermocg.io`) from an FG frame dict."""
    masses, index = fg_frames["masses"], fg_frames["molecule_index"]
    return {
        "positions": centres_of_mass(fg_frames["positions"], fg_frames["box"], masses, index),
        "forces": mapped_forces(fg_frames["forces"], masses, index),
        "potential_energy": fg_frames["potential_energy"],
        "box": fg_frames["box"],
        "time": fg_frames["time"],
        "masses": bead_masses(masses, index),
        "temperature": fg_frames["temperature"],
    }
