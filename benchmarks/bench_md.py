"""Benchmark of the CG MD engine (thermocg.md): engine overhead and CG ns/day.

System: 512 beads at water density (0.997 g/cm^3, 18.015 amu per bead, box 2.483 nm), 300 K,
Langevin BAOAB, dt 8 fs (the pipeline's cgmd.timestep), friction 1/ps, skin thermocg.md.DEFAULT_SKIN
(--skins), float32, torch.set_num_threads(2) (--threads; 1 gives steadier numbers).

Measured (medians over repeats, after a warm-up):
- force_ms: one energy + force call of the potential (forward + autograd) on the list the next step
  would use (the Verlet list at the current positions, refreshed before each block);
- step_ms: one Simulation step (BAOAB, neighbour-list checks and rebuilds amortised);
- step_no_rebuild_ms, step_with_rebuild_ms: single steps timed one by one, split by whether they
  rebuilt the neighbour list;
- run_md_step_ms: one step of run_md with its defaults (blow-up guard every 10 steps, frame and
  thermo row every 500 steps, checkpoint at the end), set-up (Simulation, PDB) subtracted;
- overhead = step_ms / force_ms (target: <= 1.2) and run_md_overhead likewise, medians of the
  ratios of alternating blocks (the machine may be shared: pairs see the same load);
- ns_per_day at dt_ps.

Potentials come from factories (name -> callable returning a potential), so more can be added:
"lj_water" (a water-like Lennard-Jones, sigma 0.29 nm, epsilon 2.0 kJ/mol, cutoff 0.6 nm: the
pair-only case), "nn" (thermocg.nn.CGModel with 128 features, cutoff 0.6 nm) and "nn_default" (the
network of config/config.yaml (64 features since 318f49c, 32 before), with trf2's W0/W1/W2 heads: what the pipeline runs).

    python benchmarks/bench_md.py [--potentials lj_water nn_default nn] [--skins 0.1 0.2] [--threads 2] [--device cpu]

Writes benchmarks/results/bench_md.tsv and prints the table.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from thermocg.md import DEFAULT_SKIN, Simulation, run_md
from thermocg.nn import tune_cpu_allocator
from thermocg.pair import LennardJones
from thermocg.units import cubic_box_length
import results_table

N_BEADS, DENSITY, TEMPERATURE, DT = 512, 0.997, 300.0, 0.008
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def lj_water():
    return LennardJones(epsilon=2.0, sigma=0.29, cutoff=0.6)


def nn_model():
    from thermocg.nn import CGModel

    return CGModel(n_features=128, cutoff=0.6)


def default_network():
    """A fresh model with the default config's network (weights do not change the cost)."""
    from thermocg import config, train

    settings = config.check(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    return train.build_model("trf2", settings)


POTENTIALS = {"lj_water": lj_water, "nn": nn_model, "nn_default": default_network}


def water_box(n_beads=N_BEADS, density=DENSITY):
    """Beads on a simple cubic lattice filling the water-density box; returns positions, box (nm)."""
    length = cubic_box_length(n_beads, density)
    side = round(n_beads ** (1 / 3))
    if side**3 != n_beads:
        raise ValueError("n_beads must be a cube")
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (grid + 0.5) * length / side, np.full(3, length)


def equilibrated(factory, device, dtype, steps=500, skin=DEFAULT_SKIN):
    positions, box = water_box()
    sim = Simulation(factory(), positions, box, TEMPERATURE, dt=DT, friction=1.0, skin=skin, seed=0, dtype=dtype,
                     device=device)
    sim.run(steps)
    return sim


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


#: Wall clock by default; "--clock cpu" uses this process's CPU time instead, which on a shared,
#: oversubscribed machine measures the work rather than the waiting (use it with --threads 1).
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def seconds_per_call(function, calls, device):
    sync(device)
    start = clock()
    function(calls)
    sync(device)
    return (clock() - start) / calls


def bench(name, factory, device, dtype, repeats, steps, skin, run_md_steps):
    sim = equilibrated(factory, device, dtype, skin=skin)
    dbeta = sim.force_field.dbeta
    n_pairs = len(sim.force_field.pairs(sim.positions)[0])

    def forces(calls):
        # The list the next MD step would use, at the current positions. (A list kept from an
        # earlier state would be wrong, and cheaper for a model that drops the pairs beyond its
        # cutoff: as the beads diffuse, fewer of its pairs stay inside.)
        i, j, shift = sim.force_field.pairs(sim.positions)
        for _ in range(calls):
            positions = sim.positions.detach().requires_grad_(True)
            energy = sim.potential(positions, i, j, shift, dbeta)
            torch.autograd.grad(energy, positions)

    def md_steps(calls):
        out = Path(tmp)
        return run_md(sim.potential, sim.positions, sim.box, TEMPERATURE, calls, trajectory=out / "t.dcd",
                      topology=out / "t.pdb", thermo=out / "t.tsv", checkpoint=out / "c.npz", dt=DT, friction=1.0,
                      skin=skin, dtype=dtype, device=device, resume=False)

    forces(3)
    # The machine is shared: short blocks of force calls and MD steps alternate, so that each pair
    # sees the same load, and the overhead is the median of the per-pair ratios.
    force_s, step_s, ratios, builds = [], [], [], 0
    for _ in range(repeats):
        force_s.append(seconds_per_call(forces, steps, device))
        before = sim.force_field.neighbor_list.n_builds
        step_s.append(seconds_per_call(sim.run, steps, device))
        builds += sim.force_field.neighbor_list.n_builds - before
        ratios.append(step_s[-1] / force_s[-1])
    # run_md in longer blocks (its output and final checkpoint are amortised over run_md_steps),
    # each against a block of force calls just before it.
    run_md_s, run_md_ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(3):
            force = seconds_per_call(forces, max(steps, run_md_steps // 4), device)
            set_up = seconds_per_call(lambda _: md_steps(0), 1, device)  # Simulation, PDB, first frame
            total = seconds_per_call(md_steps, run_md_steps, device) * run_md_steps
            run_md_s.append((total - set_up) / run_md_steps)
            run_md_ratios.append(run_md_s[-1] / force)
    run_md_median = statistics.median(run_md_s)
    # Single steps timed one by one, split by whether they rebuilt the neighbour list: how much of
    # the overhead the rebuilds are.
    split = {True: [], False: []}
    for _ in range(repeats * steps):
        before = sim.force_field.neighbor_list.n_builds
        seconds = seconds_per_call(sim.run, 1, device)
        split[sim.force_field.neighbor_list.n_builds > before].append(seconds)
    return {
        "potential": name,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "n_beads": sim.n_beads,
        "skin_nm": skin,
        "n_pairs_in_list": n_pairs,
        "force_ms": 1e3 * statistics.median(force_s),
        "step_ms": 1e3 * statistics.median(step_s),
        "run_md_step_ms": 1e3 * run_md_median,
        "step_no_rebuild_ms": 1e3 * statistics.median(split[False]) if split[False] else float("nan"),
        "step_with_rebuild_ms": 1e3 * statistics.median(split[True]) if split[True] else float("nan"),
        "overhead": statistics.median(ratios),
        "run_md_overhead": statistics.median(run_md_ratios),
        "rebuilds_per_step": builds / (repeats * steps),
        "dt_ps": DT,
        "ns_per_day": DT * 1e-3 / (run_md_median / 86400.0),
        "clock": [name for name, function in CLOCK.items() if function is clock][0],
        "load_avg_1min": os.getloadavg()[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potentials", nargs="+", default=["lj_water", "nn_default", "nn"], choices=sorted(POTENTIALS))
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--steps", type=int, default=40, help="steps (and force calls) per block")
    parser.add_argument("--run-md-steps", type=int, default=1000, help="steps per run_md block (3 blocks)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall")
    parser.add_argument("--skins", type=float, nargs="+", default=[DEFAULT_SKIN], help="Verlet skins to compare (nm)")
    parser.add_argument("--output", default=str(results_table.RESULTS / "bench_md.tsv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()  # as the pipeline's CG MD does (thermocg.cgmd)
    global clock
    clock = CLOCK[args.clock]
    rows = []
    for name in args.potentials:
        for skin in args.skins:
            try:
                rows.append(bench(name, POTENTIALS[name], args.device, getattr(torch, args.dtype), args.repeats,
                                  args.steps, skin, args.run_md_steps))
            except ImportError as error:
                print(f"skipping {name}: {error}", file=sys.stderr)
                break
    table = pd.DataFrame(rows)
    results_table.write(table, args.output)
    return table


if __name__ == "__main__":
    main()
