"""Sampling throughput: the sample_fg code path against bare OpenMM stepping of the same system.

Run: .venv/bin/python benchmarks/bench_fg.py [--molecules 256] [--threads 1] [--repeats 3] [--platform CPU]
Writes benchmarks/results/fg.tsv and prints it. Both measurements run in this one process,
alternating, so that machine load affects them alike; medians are reported.

Also measured: ``checkpoint_s``, one checkpoint of the sampling (createCheckpoint, then the
reinitialised context that continues from it, and the first force evaluation after it), and
``checkpoint_share``, its cost relative to simulating one ``--checkpoint-interval``.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import pandas as pd
from openmm import unit

from thermocg import fg
import results_table


def bare_ns_per_day(settings, steps):
    """OpenMM stepping with nothing recorded: the ceiling for the sampling rule."""
    topology, positions, forcefield = fg.build_water_box(settings.model, settings.n_molecules, settings.density, settings.seed)
    system = fg.create_system(topology, forcefield, settings.cutoff, settings.ewald_tolerance)
    integrator = openmm.LangevinMiddleIntegrator(settings.temperature, settings.friction, settings.timestep)
    simulation = fg.create_simulation(topology, system, integrator, settings.platform, settings.threads)
    simulation.context.setPositions(positions * unit.nanometer)
    simulation.context.applyConstraints(1e-8)
    fg._relax(integrator, settings)
    integrator.step(200)  # warm-up
    start = time.perf_counter()
    integrator.step(steps)
    return steps * settings.timestep / (time.perf_counter() - start) * 86400 / 1000


def checkpoint_seconds(settings):
    """Wall time of one sampling checkpoint: save the state, continue in a reinitialised context."""
    topology, positions, forcefield = fg.build_water_box(settings.model, settings.n_molecules, settings.density, settings.seed)
    system = fg.create_system(topology, forcefield, settings.cutoff, settings.ewald_tolerance)
    integrator = openmm.LangevinMiddleIntegrator(settings.temperature, settings.friction, settings.timestep)
    simulation = fg.create_simulation(topology, system, integrator, settings.platform, settings.threads)
    context = simulation.context
    context.setPositions(positions * unit.nanometer)
    context.applyConstraints(1e-8)
    fg._relax(integrator, settings)
    start = time.perf_counter()
    fg._continue_from(context, context.createCheckpoint())
    integrator.step(1)  # the first step after it builds what the new context lacks
    return time.perf_counter() - start


def sampling_ns_per_day(settings):
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / name for name in ("f.npz", "t.dcd", "t.pdb", "s.xml", "state.npz")]
        return fg.sample(settings, *paths)["ns_per_day"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--molecules", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--production", type=float, default=6.0, help="ps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint-interval", type=float, default=5.0, help="ps (the default config's)")
    parser.add_argument("--platform", default="CPU", choices=["CPU", "CUDA"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = fg.SamplingSettings(
        model="spce", n_molecules=args.molecules, density=0.997, cutoff=0.9, ewald_tolerance=5e-4,
        temperature=300.0, seed=1, timestep=0.002, equilibration=0.0, equilibration_friction=1.0,
        production=args.production, friction=0.1, frame_interval=0.1, checkpoint_interval=args.checkpoint_interval,
        platform=args.platform, threads=args.threads,
    )
    steps = round(args.production / settings.timestep)
    bare, rule, checkpoint = [], [], []
    for _ in range(args.repeats):
        bare.append(bare_ns_per_day(settings, steps))
        rule.append(sampling_ns_per_day(settings))
        checkpoint.append(checkpoint_seconds(settings))
    interval_s = args.checkpoint_interval / 1000 / np.median(bare) * 86400
    table = pd.DataFrame([{
        "platform": args.platform, "molecules": args.molecules, "threads": args.threads, "production_ps": args.production,
        "frame_interval_ps": settings.frame_interval, "repeats": args.repeats,
        "bare_openmm_ns_per_day": np.median(bare), "sample_fg_ns_per_day": np.median(rule),
        "ratio": np.median(rule) / np.median(bare), "checkpoint_interval_ps": args.checkpoint_interval,
        "checkpoint_s": np.median(checkpoint), "checkpoint_share": np.median(checkpoint) / interval_s,
    }])
    results_table.write(table, results_table.RESULTS / "fg.tsv")


if __name__ == "__main__":
    main()
