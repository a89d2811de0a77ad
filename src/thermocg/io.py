"""Every on-disk format of thermocg in one place, with units.

Frame files are NumPy ``.npz`` archives. Array names, shapes and units:

FG frames (``results/fg/T<T>/frames.npz``, written by :mod:`thermocg.fg`)
    positions         (F, n_particles, 3) float64  nm, continuous in time (never wrapped)
    forces            (F, n_particles, 3) float64  kJ/(mol nm), no constraint forces
    potential_energy  (F,)                float64  kJ/mol
    box               (F, 3)              float64  nm, orthorhombic edge lengths
    time              (F,)                float64  ps since the start of production
    masses            (n_particles,)      float64  amu (0 for virtual sites)
    molecule_index    (n_particles,)      int64    molecule each particle belongs to
    temperature       ()                  float64  K

CG frames (``results/cg/T<T>/beads.npz``, written by :mod:`thermocg.mapping`)
    positions         (F, N, 3)  nm, bead = molecule centre of mass, continuous in time
    forces            (F, N, 3)  kJ/(mol nm), mapped force (sum over the molecule)
    potential_energy  (F,)       kJ/mol, the FG potential energy of the frame
    box, time, temperature as above; masses (N,) amu

Per-molecule energies (``results/cg/T<T>/molecule_energies.npz``, :mod:`thermocg.energies`)
    bead_energies     (F, N)     kJ/mol, share u_J of the FG potential energy, sum_J u_J = U

Every archive also holds ``units``: a JSON string mapping array names to units, so that a file
read without this module still states them.
"""

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

UNITS = {
    "positions": "nm",
    "forces": "kJ/(mol nm)",
    "potential_energy": "kJ/mol",
    "box": "nm",
    "time": "ps",
    "masses": "amu",
    "molecule_index": "1",
    "temperature": "K",
    "bead_energies": "kJ/mol",
}


_UMASK = os.umask(0)
os.umask(_UMASK)


class DamagedFileError(OSError):
    """A file that exists but cannot be read back (truncated, corrupted)."""

    @classmethod
    def of(cls, path, error):
        return cls(f"{path} is damaged or truncated ({error}); remake it by rerunning the job that wrote it: "
                   f"snakemake --cores 1 -R {path}")


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    An OSError (a full disk, a missing permission) is raised again naming ``path``.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are for everyone to read
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError):
            message = f"cannot write {path}: {error.strerror or error}"
            raise (OSError(error.errno, message) if error.errno else OSError(message)) from error
        raise


def save_frames(path, **arrays):
    """Save named arrays (see the module docstring) atomically, with their units."""
    units = {name: UNITS.get(name, "see producer") for name in arrays}

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, units=json.dumps(units), **arrays)

    atomic_write(path, write)


def load_frames(path):
    """Load a frame archive into a dict of arrays (``units`` decoded to a dict).

    A damaged archive raises :class:`DamagedFileError` naming the file and how to remake it.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise DamagedFileError.of(path, error) from error
    out["units"] = json.loads(str(out["units"])) if "units" in out else {}  # a user's own archive may have none
    return out


def write_json(path, obj):
    """Write a JSON document atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_table(path, frame, comment=None):
    """Write a pandas DataFrame as TSV atomically; ``comment`` lines go first, prefixed '# '."""

    def write(tmp):
        with open(tmp, "w") as handle:
            for line in (comment or "").splitlines():
                handle.write(f"# {line}\n")
            frame.to_csv(handle, sep="\t", index=False, float_format="%.8g")

    atomic_write(path, write)


def read_table(path):
    """Read a TSV written by :func:`write_table`."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", comment="#")


def cg_topology(n_beads, residue_name="HOH", atom_name="W"):
    """mdtraj Topology with one residue of one bead per molecule, for every CG trajectory.

    Element oxygen is a stand-in that every PDB reader accepts; bead masses live in the bead
    archives (``masses``), not here.
    """
    import mdtraj

    topology = mdtraj.Topology()
    chain = topology.add_chain()
    for k in range(n_beads):
        residue = topology.add_residue(residue_name, chain, resSeq=k % 10000)
        topology.add_atom(atom_name, mdtraj.element.oxygen, residue)
    return topology


def save_dcd(path, trajectory):
    """An mdtraj Trajectory as DCD, atomically.

    DCD keeps positions and box only: the trajectory's ``time`` is lost, and mdtraj reads the
    frame index (0, 1, 2, ...) back as the time. Keep the times (ps) elsewhere: the bead archive
    (``time``), or the frame interval of the run that wrote it (thermocg.md.run_md's summary).
    """

    def write(tmp):
        try:
            trajectory.save_dcd(tmp)
        except TypeError as error:  # mdtraj's DCD writer reports a failed write (a full disk) this way
            raise OSError(f"the DCD writer failed (disk full?): {error}") from error

    atomic_write(path, write)


def write_cg_trajectory(trajectory_path, topology_path, positions, box, time):
    """Bead trajectory (DCD, nm) and PDB topology (:func:`cg_topology`) that mdtraj reads.

    ``time`` (F,) ps is checked (one per frame, increasing) but not stored: DCD has no times (see
    :func:`save_dcd`); they stay in the bead archive the positions came from.
    """
    import mdtraj

    positions, time = np.asarray(positions), np.asarray(time, dtype=np.float64)
    if time.shape != (len(positions),) or np.any(np.diff(time) <= 0):
        raise ValueError(f"need one increasing time (ps) per frame: {len(positions)} frames, times of shape {time.shape}")
    trajectory = mdtraj.Trajectory(
        positions.astype(np.float32), cg_topology(positions.shape[1]), time=time,
        unitcell_lengths=np.asarray(box), unitcell_angles=np.full((len(positions), 3), 90.0),
    )
    save_dcd(trajectory_path, trajectory)
    atomic_write(topology_path, lambda tmp: trajectory[0].save_pdb(tmp))
