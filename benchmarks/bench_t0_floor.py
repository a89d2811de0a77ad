"""The FG noise floor at T0 on the run length of the other temperatures, and fm_oracle's eps at T0 against it.

The transferability table's floor is eps between the two halves of one FG run. At T0 that run is
the long one every T0-only model trains on (`fg.reference_production`, 60 ps in the default), at
the other temperatures a run of `fg.production` (30 ps): the T0 floor is between halves twice as
long, so it is the stricter one. This puts the floors on one footing: the T0 run is cut into
consecutive windows of `--window` ps (default: `fg.production`), and the independent T0 run of the
held-out score (`fg.score_production`, when the run has it) into windows too; each window's floor is
eps between its halves (thermocg.observables.halves, thermocg.transfer.halves_spread).

    python benchmarks/bench_t0_floor.py [--results results] [--config config/config.yaml] [--window 30]

Writes benchmarks/results/t0_floor.tsv (one row per window: source, start_ps, end_ps, eps_g_floor,
eps_a_floor, and the oracle's eps at T0 over each) and prints it, then the table's own T0 floor and
the oracle's eps_a over the windows' mean floor. Seconds per run (RDF and ADF of 600-900 frames).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import results_table

from thermocg import config as configuration
from thermocg import io, observables, transfer
from thermocg.config import temperature_label

#: where the table goes (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")


def window_floors(beads, window_ps, settings):
    """[(start_ps, end_ps, {"eps_g", "eps_a"})] of consecutive windows of ``window_ps`` of a bead
    trajectory (the last one dropped when shorter than a window)."""
    time = np.asarray(beads["time"], dtype=float)
    interval = float(time[1] - time[0])
    per_window = int(round(window_ps / interval))
    if per_window < 2 or per_window > len(time):
        raise ValueError(f"a {window_ps} ps window has {per_window} frames of a run of {len(time)}: need 2 to all of them")
    floors = []
    for start in range(0, len(time) - per_window + 1, per_window):
        frames = slice(start, start + per_window)
        tables = {name: pd.DataFrame(dict(zip(observables.TABLE_COLUMNS[name], values)))
                  for name, values in observables.halves(beads["positions"][frames], beads["box"][frames], settings).items()}
        floor = transfer.halves_spread(tables["rdf_halves"], tables["adf_halves"])
        floors.append((float(time[start] - time[0]), float(time[start] - time[0]) + per_window * interval, floor))
    return floors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--window", type=float, help="ps per window; default: the config's fg.production")
    args = parser.parse_args()
    results = Path(args.results)
    settings = configuration.load(args.config)
    window = args.window or float(settings["fg"]["production"])
    t0 = temperature_label(settings["reference_temperature"])
    table = io.read_table(results / "metrics" / "transferability.tsv")
    oracle = table[(table["kind"] == "fm_oracle") & (table["T_K"] == float(settings["reference_temperature"]))]
    if oracle.empty:
        parser.error(f"{results}/metrics/transferability.tsv has no fm_oracle row at T0")
    oracle = oracle.iloc[0]
    sources = {"T0 run": results / "cg" / f"T{t0}" / "beads.npz", "score run": results / "cg" / f"T{t0}" / "score" / "beads.npz"}
    rows = []
    for source, path in sources.items():
        if not path.exists():
            continue
        for start, end, floor in window_floors(io.load_frames(path), window, settings["observables"]):
            rows.append({"source": source, "start_ps": start, "end_ps": end, "eps_g_floor": floor["eps_g"],
                         "eps_a_floor": floor["eps_a"], "oracle_eps_g_over_floor": oracle["eps_g"] / floor["eps_g"],
                         "oracle_eps_a_over_floor": oracle["eps_a"] / floor["eps_a"]})
    if not rows:
        parser.error(f"no T0 frames under {results}/cg/T{t0}")
    floors = pd.DataFrame(rows)
    results_table.write(floors, OUT / "t0_floor.tsv")
    mean_a = floors["eps_a_floor"].mean()
    print(f"\nthe table's T0 floor (halves of the whole T0 run): eps_g {oracle['eps_g_floor']:.4g}, eps_a {oracle['eps_a_floor']:.4g}; "
          f"fm_oracle at T0: eps_g {oracle['eps_g']:.4g}, eps_a {oracle['eps_a']:.4g} "
          f"({oracle['eps_a'] / oracle['eps_a_floor']:.2f}x that floor)")
    print(f"{window:g} ps windows: mean eps_a floor {mean_a:.4g}; fm_oracle's eps_a {oracle['eps_a'] / mean_a:.2f}x it")


if __name__ == "__main__":
    sys.exit(main())
