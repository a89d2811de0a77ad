"""Seconds per frame of thermocg.energies for 512 rigid waters at 0.997 g/cm^3 (cutoff 0.9 nm, PME).

Frames come from a short OpenMM CPU run (not timed). Writes benchmarks/results/energies.tsv (one row
per model) and prints it. Usage: .venv/bin/python benchmarks/bench_energies.py [--model spce] [--frames 20]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import openmm
import pandas as pd
from openmm import app, unit

from thermocg.energies import MoleculeEnergies
from thermocg.io import read_table, write_table
from thermocg.units import cubic_box_length

FORCE_FIELDS = {"spce": "spce.xml", "tip3p": "tip3p.xml", "tip4pew": "tip4pew.xml", "opc": "opc.xml"}
# Pre-equilibrated boxes that Modeller has (OPC has none: start from TIP4P-Ew's, 4-site too).
SOLVENT_BOXES = {"spce": "spce", "tip3p": "tip3p", "tip4pew": "tip4pew", "opc": "tip4pew"}
RESULTS = Path(__file__).parent / "results" / "energies.tsv"


def sample(model, n_molecules, n_frames, density=0.997, cutoff=0.9):
    """(system, molecule_index, positions (F, n, 3), box (F, 3), OpenMM CPU energies (F,))."""
    forcefield = app.ForceField(FORCE_FIELDS[model])
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, model=SOLVENT_BOXES[model], numAdded=n_molecules)
    # addSolvent packs at its template's density: move the molecules' centres to the wanted box.
    edge = cubic_box_length(n_molecules, density)
    old_edge = modeller.topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer))
    molecule_index = np.array([atom.residue.index for atom in modeller.topology.atoms()])
    centres = np.array([positions[molecule_index == m].mean(axis=0) for m in range(n_molecules)])
    positions += (centres * (edge / old_edge - 1))[molecule_index]
    modeller.topology.setPeriodicBoxVectors([openmm.Vec3(*row) for row in np.eye(3) * edge] * unit.nanometer)

    system = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer, rigidWater=True
    )
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    context.computeVirtualSites()
    context.applyConstraints(1e-8)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    integrator.step(200)
    frames, energies = [], []
    for _ in range(n_frames):
        integrator.step(25)
        state = context.getState(getPositions=True, getEnergy=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    box = np.full((n_frames, 3), edge)
    return system, molecule_index, np.array(frames), box, np.array(energies)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="spce", choices=sorted(FORCE_FIELDS))
    parser.add_argument("--molecules", type=int, default=512)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()

    system, molecule_index, positions, box, engine = sample(args.model, args.molecules, args.frames)
    start = time.perf_counter()
    shares = MoleculeEnergies(system, molecule_index)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    u = np.array([shares(p, b) for p, b in zip(positions, box)])
    per_frame = (time.perf_counter() - start) / len(positions)

    row = {
        "model": args.model,
        "n_molecules": args.molecules,
        "n_particles": positions.shape[1],
        "n_frames": len(positions),
        "seconds_per_frame": per_frame,
        "setup_seconds": setup,
        "pme_grid": "x".join(str(k) for k in shares.grid),
        "alpha_per_nm": shares.alpha,
        # OpenMM's CPU platform sums in single precision: expect ~1e-6 here, not 1e-14.
        "max_rel_diff_vs_openmm_cpu": float(np.max(np.abs(u.sum(axis=1) - engine) / np.abs(engine))),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    table = pd.DataFrame([row])
    if RESULTS.exists():  # keep the other models' rows
        previous = read_table(RESULTS)
        table = pd.concat([previous[previous["model"] != args.model], table], ignore_index=True)
    write_table(RESULTS, table, comment="thermocg.energies: per-molecule energy shares, time per frame")
    print(read_table(RESULTS).to_string(index=False))


if __name__ == "__main__":
    main()
