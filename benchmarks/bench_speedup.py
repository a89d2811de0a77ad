"""CG speed-up: CG MD ns/day over atomistic (FG) ns/day for the same number of molecules, one run.

FG: bare OpenMM stepping of SPC/E (PME 0.9 nm, 2 fs), as in bench_fg.py. CG: thermocg.md
Langevin at the CG time step (default 8 fs, the pipeline's cgmd.timestep, which keeps the RDF
within run-to-run noise of 2 fs: benchmarks/bench_timestep.py; the larger step is part of the win)
with each potential:

- nn_default: the default config's network (config/config.yaml: 64 features since 318f49c, 32 before; 1 interaction layer,
  r_c 0.6 nm, with the W0/W1/W2 heads of trf2);
- nn: the larger network of bench_nn.py and config/paper.yaml's width (128 features, 1 layer);
- lj_water: pair-only, a water-like Lennard-Jones (bench_md.py).

512 molecules by default.

    python benchmarks/bench_speedup.py [--molecules 512] [--threads 1] [--cg-dt 0.008]

Writes benchmarks/results/speedup.tsv and prints it.
"""

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_fg import bare_ns_per_day  # noqa: E402
from bench_md import POTENTIALS, TEMPERATURE, water_box  # noqa: E402

from thermocg import fg, nn  # noqa: E402
from thermocg.md import Simulation  # noqa: E402
import results_table  # noqa: E402

CG_POTENTIALS = {name: POTENTIALS[name] for name in ("nn_default", "nn", "lj_water")}


def cg_ns_per_day(factory, n_beads, dt, steps, threads):
    torch.set_num_threads(threads)
    positions, box = water_box(n_beads)
    sim = Simulation(factory(), positions, box, TEMPERATURE, dt=dt, friction=5.0, seed=0, device="cpu")
    sim.run(50)  # warm-up
    start = time.perf_counter()
    sim.run(steps)
    return steps * dt * 1e-3 / ((time.perf_counter() - start) / 86400)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--molecules", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cg-dt", type=float, default=0.008, help="CG time step, ps")
    parser.add_argument("--fg-ps", type=float, default=4.0, help="FG simulated time per measurement, ps")
    parser.add_argument("--cg-steps", type=int, default=200)
    args = parser.parse_args()
    nn.tune_cpu_allocator()
    settings = fg.SamplingSettings(
        model="spce", n_molecules=args.molecules, density=0.997, cutoff=0.9, ewald_tolerance=5e-4,
        temperature=TEMPERATURE, seed=1, timestep=0.002, equilibration=0.0, equilibration_friction=1.0,
        production=args.fg_ps, friction=0.1, frame_interval=0.1, checkpoint_interval=5.0, platform="CPU",
        threads=args.threads,
    )
    fg_speed = bare_ns_per_day(settings, round(args.fg_ps / settings.timestep))
    rows = []
    for name, factory in CG_POTENTIALS.items():
        speed = cg_ns_per_day(factory, args.molecules, args.cg_dt, args.cg_steps, args.threads)
        rows.append({"potential": name, "molecules": args.molecules, "threads": args.threads, "fg_dt_ps": 0.002,
                     "cg_dt_ps": args.cg_dt, "fg_ns_per_day": fg_speed, "cg_ns_per_day": speed,
                     "speedup": speed / fg_speed})
    table = pd.DataFrame(rows)
    results_table.write(table, results_table.RESULTS / "speedup.tsv")


if __name__ == "__main__":
    main()
