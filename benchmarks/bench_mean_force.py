"""Noise-free force-matching targets: the mean force at each T0 training frame, from restrained FG runs.

Force matching regresses the mapped force f_I on the bead positions R; its conditional mean <f_I>_R
is the mean force F_I(R) (METHOD.md), the rest is noise. This benchmark measures that noise and
removes it: from each T0 frame the networks train on (training and validation frames, as
thermocg.train.split_indices picks them) it runs the FG system with every molecule's centre of mass
held at its bead position by a stiff harmonic restraint (k, kJ/(mol nm^2); the beads move about
sqrt(k_B T / k), 0.0016 nm at the default) and averages the mapped force over the run: the molecules
turn and the mapped force samples its conditional distribution at fixed R. The restraint balances
the mean force, so the beads sit, on average, F / k away from R, and there the mean force is weaker
by the cage's stiffness times that shift (a few per cent at 1e6: with k = 5e4 the averages' rms is
about 0.6 of the mean force's, a cage about 4e4 kJ/(mol nm^2) stiff); the average is the mean force
at the beads' mean positions, to first order in the shift, so those are the configuration it is
paired with. It writes a copy of the run's T0 bead archive with those frames' positions and forces
replaced by the mean positions and the averages, as ``OUT/cg/T<T0>/beads.npz``:
`bench_fm_capacity.py --t0-run conditional OUT` then trains force matching on them and compares the
structure with the run's own fit.

Per frame (benchmarks/results/mean_force.tsv) it tabulates, per force component and in
(kJ/(mol nm))^2: the variance of the mapped force within the restrained run (the noise of one
sample, Var_R(f)), the squared difference between the frame's mapped force and the average (the
noise the run's own target carries), a quarter of the squared difference between the averages of
the run's two halves (the noise left in the average, were the halves independent; slower
orientational modes make it an underestimate), the rms of the average plus the mean restraint
force (the two balance up to the momentum change and the thermostat's kicks over the run: a check
of the sampling) and the rms shift of the beads' mean positions from R (nm).

    python benchmarks/bench_mean_force.py [--results results] [--config config/config.yaml]
        [--out benchmarks/results/mean_force_run] [--duration 1.0] [--restraint 1e6] [--max-frames N]
        [--seed S] [--threads 1]

Prints the medians over frames and the variance of the frames' mapped forces beside them.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import pandas as pd
import results_table

from thermocg import config as configuration
from thermocg import fg, io, mapping, train
from thermocg.config import temperature_label

log = logging.getLogger("bench_mean_force")
#: where the table goes (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")
#: kJ/(mol nm) and nm, the units OpenMM's states are read in
FORCE_UNIT, LENGTH_UNIT = unit.kilojoule_per_mole / unit.nanometer, unit.nanometer
RESTRAINED, FREE = 1, 0  # force groups: the restraints, everything of the FG system


def restrained_system(system, masses, molecule_index, stiffness):
    """The FG system plus a harmonic restraint of every molecule's centre of mass (force group RESTRAINED)
    to per-molecule centres set later (bond parameters x0, y0, z0, nm)."""
    for force in system.getForces():
        force.setForceGroup(FREE)
    restraint = openmm.CustomCentroidBondForce(1, "0.5*k*((x1-x0)^2+(y1-y0)^2+(z1-z0)^2)")
    restraint.addGlobalParameter("k", stiffness)
    for name in ("x0", "y0", "z0"):
        restraint.addPerBondParameter(name)
    real = masses > 0  # virtual sites carry no mass and do not enter the centre
    for molecule in range(molecule_index.max() + 1):
        atoms = np.flatnonzero((molecule_index == molecule) & real)
        group = restraint.addGroup([int(a) for a in atoms], [float(masses[a]) for a in atoms])
        restraint.addBond([group], [0.0, 0.0, 0.0])
    restraint.setForceGroup(RESTRAINED)
    system.addForce(restraint)
    return restraint


def mean_force_at(context, restraint, fg_frames, frame, centres, n_samples, steps_per_sample, seed):
    """Restrained run from FG frame ``frame``, every molecule held at its bead position ``centres`` (N, 3,
    the frame's mapped positions): (per-sample mapped forces (n_samples, N, 3), mean restraint force
    (N, 3), mean bead positions (N, 3))."""
    masses, index = fg_frames["masses"], fg_frames["molecule_index"]
    box = fg_frames["box"][frame : frame + 1]
    whole = mapping.make_molecules_whole(fg_frames["positions"][frame : frame + 1], box, index)
    context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.diag(box[0])))
    context.setPositions(whole[0] * LENGTH_UNIT)
    for molecule, centre in enumerate(centres):
        restraint.setBondParameters(molecule, [molecule], [float(c) for c in centre])
    restraint.updateParametersInContext(context)
    context.setVelocitiesToTemperature(context.getIntegrator().getTemperature(), seed)
    forces, held, positions = [], np.zeros_like(centres), np.zeros_like(centres)
    for _ in range(n_samples):
        context.getIntegrator().step(steps_per_sample)
        state = context.getState(getForces=True, getPositions=True, groups={FREE})
        forces.append(mapping.mapped_forces(state.getForces(asNumpy=True).value_in_unit(FORCE_UNIT)[None], masses, index)[0])
        atoms = state.getPositions(asNumpy=True).value_in_unit(LENGTH_UNIT)[None]
        positions += mapping.centres_of_mass(atoms, box, masses, index)[0] / n_samples
        pulled = context.getState(getForces=True, groups={RESTRAINED}).getForces(asNumpy=True).value_in_unit(FORCE_UNIT)
        held += mapping.mapped_forces(pulled[None], masses, index)[0] / n_samples
    return np.array(forces), held, positions


def frame_row(frame, samples, held, positions, centres, own_force):
    """The table's row of one frame (see the module docstring)."""
    mean = samples.mean(0)
    half = len(samples) // 2
    halves = samples[:half].mean(0) - samples[half : 2 * half].mean(0)
    return {
        "frame": frame,
        "sample_variance": samples.var(0).mean(),
        "own_target_noise": ((own_force - mean) ** 2).mean(),
        "average_noise_halves": (halves**2).mean() / 4,
        "balance_rms": np.sqrt(((mean + held) ** 2).mean()),
        "mean_force_rms": np.sqrt((mean**2).mean()),
        "bead_shift_nm": np.sqrt(((positions - centres) ** 2).sum(-1).mean()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--out", default="benchmarks/results/mean_force_run", help="where the bead archive goes")
    parser.add_argument("--duration", type=float, default=1.0, help="ps of restrained run per frame")
    parser.add_argument("--restraint", type=float, default=1e6, help="kJ/(mol nm^2)")
    parser.add_argument("--sample-interval", type=float, default=0.01, help="ps between averaged samples")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps, Langevin")
    parser.add_argument("--max-frames", type=int, help="only the first N training frames (a quick look)")
    parser.add_argument("--seed", type=int, help="the thermostat's and the velocities' seed; default: the config's")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMM CPU threads: 1 is reproducible to the bit, more are faster but not (as in sampling)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    settings = configuration.load(args.config)
    results, t0 = Path(args.results), float(settings["reference_temperature"])
    label = temperature_label(t0)
    fg_frames = io.load_frames(results / "fg" / f"T{label}" / "frames.npz")
    beads = io.load_frames(results / "cg" / f"T{label}" / "beads.npz")
    training = settings["training"]
    split = train.split_indices(len(beads["time"]), training["validation_fraction"], training["test_fraction"],
                                training["frame_stride"])
    frames = np.concatenate([split["train"], split["validation"]])[: args.max_frames]
    timestep = settings["fg"]["timestep"]
    steps_per_sample = max(1, round(args.sample_interval / timestep))
    n_samples = max(2, round(args.duration / (steps_per_sample * timestep)))

    system = openmm.XmlSerializer.deserialize((results / "fg" / f"T{label}" / "system.xml").read_text())
    restraint = restrained_system(system, fg_frames["masses"], fg_frames["molecule_index"], args.restraint)
    integrator = openmm.LangevinMiddleIntegrator(t0 * unit.kelvin, args.friction / unit.picosecond,
                                                 timestep * unit.picosecond)
    seed = settings["seed"] if args.seed is None else args.seed
    integrator.setRandomNumberSeed(seed)
    platform, properties = fg.platform_candidates("CPU", args.threads)[0]
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)

    forces, positions, rows, start = beads["forces"].copy(), beads["positions"].copy(), [], time.perf_counter()
    for number, frame in enumerate(frames, 1):
        centres = beads["positions"][frame]
        samples, held, mean_positions = mean_force_at(context, restraint, fg_frames, frame, centres, n_samples,
                                                      steps_per_sample, seed=seed + int(frame) + 1)
        rows.append(frame_row(int(frame), samples, held, mean_positions, centres, beads["forces"][frame]))
        forces[frame], positions[frame] = samples.mean(0), mean_positions
        if number % 10 == 0 or number == len(frames):
            log.info("%d / %d frames, %.0f s", number, len(frames), time.perf_counter() - start)

    out = Path(args.out) / "cg" / f"T{label}" / "beads.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    io.save_frames(out, **{**{k: v for k, v in beads.items() if k != "units"}, "forces": forces, "positions": positions})
    table = pd.DataFrame(rows)
    results_table.write(table, OUT / "mean_force.tsv")
    print(f"\n{len(frames)} frames, {args.duration} ps each ({n_samples} samples), "
          f"{time.perf_counter() - start:.0f} s; medians over frames:")
    print(table.drop(columns="frame").median().to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"variance of the frames' mapped forces: {beads['forces'][frames].var():.4g}; of their averages: "
          f"{forces[frames].var():.4g}; written {out}")


if __name__ == "__main__":
    main()
