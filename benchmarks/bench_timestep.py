"""How large a CG time step can be: structure, kinetic temperature and stability against dt.

For a fitted model (by default the default pipeline's fm_ref and trf2) at a few temperatures,
Langevin BAOAB (thermocg.md, friction --friction, by default 25/ps, about what the friction fit
gives for water) runs from the last mapped FG frame at each time step: 2 ps equilibration, then
--production ps with a frame every 0.1 ps. Reported per (model, T, dt):

- eps_g_vs_smallest: RMS difference (r >= 0.2 nm, 0.01 nm bins) of the COM RDF from the RDF at
  the smallest dt of the same model and T. Compare it with the same number between two seeds at
  the smallest dt (row dt = smallest, column eps_g_seed_noise): below that noise, the time step
  does not change the structure;
- T_kin_K: mean kinetic temperature (BAOAB's kinetic temperature is biased by O(dt^2) even where
  configurations are accurate, so this is the stricter test);
- energy_drift_kJ_mol_per_ps: slope of the total energy over the production. With a weak
  friction (a friction law can ask for 0.01/ps, docs/dynamics.md) the run is nearly
  microcanonical, and this is the integrator's own error, which a strong friction hides;
- ms_per_step and ns_per_day (1 thread); blew_up.

    python benchmarks/bench_timestep.py [--results results] [--models fm_ref trf2]
        [--temperatures 300 450] [--timesteps 0.002 0.004 0.008 0.010 0.012] [--production 10] [--friction 25]

Needs the outputs of a pipeline run (results/models, results/cg). Writes
benchmarks/results/timestep.tsv and prints it.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import cgmd, md, nn, observables
import results_table

def run(model, beads_path, temperature, reference_temperature, dt, production, seed, friction):
    """(frames (F, N, 3) nm, box (3,) nm, mean T_kin K, ms per step, energy drift kJ/mol/ps); raises md.BlowUpError."""
    positions, box, masses = cgmd.start_frame(beads_path)
    sim = md.Simulation(model, positions, box, temperature, dt=dt, friction=friction, masses=masses, seed=seed,
                        device="cpu", reference_temperature=reference_temperature)
    guard = md.BlowUpGuard()
    sim.run(round(2.0 / dt))
    every = round(0.1 / dt)
    frames, t_kin, energy = [], [], []
    start = time.perf_counter()
    for _ in range(round(production / 0.1)):
        sim.run(every)
        reason = guard.check(sim)
        if reason is not None:
            raise md.BlowUpError(sim.step, reason)
        frames.append(sim.positions.double().numpy().copy())
        t_kin.append(sim.kinetic_temperature())
        energy.append(sim.kinetic_energy() + sim.potential_energy())
    ms_per_step = 1e3 * (time.perf_counter() - start) / (len(frames) * every)
    drift = np.polyfit(0.1 * np.arange(1, len(energy) + 1), energy, 1)[0]
    return np.array(frames), box, float(np.mean(t_kin)), ms_per_step, float(drift)


def rdf(frames, box):
    r, g = observables.rdf(frames, np.tile(box, (len(frames), 1)), bin_width=0.01)
    return g[r >= 0.2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--models", nargs="+", default=["fm_ref", "trf2"])
    parser.add_argument("--temperatures", nargs="+", default=["300", "450"])
    parser.add_argument("--timesteps", nargs="+", type=float, default=[0.002, 0.004, 0.008, 0.010, 0.012])
    parser.add_argument("--production", type=float, default=10.0, help="ps per run")
    parser.add_argument("--friction", type=float, default=25.0, help="1/ps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    nn.tune_cpu_allocator()
    timesteps = sorted(args.timesteps)
    rows = []
    for name in args.models:
        model, metadata = nn.load_model(args.results / "models" / name / "model.pt")
        for label in args.temperatures:
            beads = args.results / "cg" / f"T{label}" / "beads.npz"
            common = (model, beads, float(label), float(metadata["T0_K"]))
            options = {"production": args.production, "friction": args.friction}
            reference = None
            for dt in timesteps:
                row = {"model": name, "T_K": float(label), "dt_fs": 1e3 * dt, "friction_per_ps": args.friction}
                try:
                    frames, box, t_kin, ms, drift = run(*common, dt, seed=1, **options)
                except md.BlowUpError as error:
                    rows.append(row | {"blew_up": True, "reason": error.reason})
                    print(rows[-1], flush=True)
                    continue
                g = rdf(frames, box)
                if reference is None:  # the smallest dt, and its seed-to-seed noise
                    reference = g
                    row["eps_g_seed_noise"] = float(np.sqrt(np.mean((rdf(*run(*common, dt, seed=2, **options)[:2]) - g) ** 2)))
                rows.append(row | {"blew_up": False, "eps_g_vs_smallest": float(np.sqrt(np.mean((g - reference) ** 2))),
                                   "T_kin_K": t_kin, "energy_drift_kJ_mol_per_ps": drift, "ms_per_step": ms,
                                   "ns_per_day": dt * 1e-3 / (ms * 1e-3 / 86400)})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    results_table.write(table, results_table.RESULTS / "timestep.tsv")


if __name__ == "__main__":
    main()
