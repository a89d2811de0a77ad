"""CG speed-up: CG MD ns/day over atomistic (FG) ns/day for the same number of molecules, one run.

FG: bare OpenMM stepping of SPC/E (PME 0.9 nm, 2 fs), as in bench_fg.py. CG: thermocg.md
Langevin at the CG time step (default 4 fs, the pipeline's cgmd.timestep: the larger step is part
of the win) with each potential of bench_md.py: the network (thermocg.nn.CGModel, 128 features,
r_c 0.6 nm) and a pair-only water-like Lennard-Jones. 512 molecules by default.

    python benchmarks/bench_speedup.py [--molecules 512] [--threads 2] [--cg-dt 0.004]

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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cg-dt", type=float, default=0.004, help="CG time step, ps")
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
    for name in ("nn", "lj_water"):
        speed = cg_ns_per_day(POTENTIALS[name], args.molecules, args.cg_dt, args.cg_steps, args.threads)
        rows.append({"potential": name, "molecules": args.molecules, "threads": args.threads, "fg_dt_ps": 0.002,
                     "cg_dt_ps": args.cg_dt, "fg_ns_per_day": fg_speed, "cg_ns_per_day": speed,
                     "speedup": speed / fg_speed})
    table = pd.DataFrame(rows)
    out = Path(__file__).parent / "results" / "speedup.tsv"
    out.parent.mkdir(exist_ok=True)
    table.to_csv(out, sep="\t", index=False, float_format="%.3f")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
