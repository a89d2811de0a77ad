"""Angular order of the network (network.angular_order 2 or 3): eps_g and eps_a of force matching.

Needs a finished default run (its CG frames, FG observables and fm_ref's fitted friction). For each
angular order and training seed, fits the force-matched model of the run's frames at each chosen
temperature (fm_ref at T0, fm_oracle elsewhere, with the config's network and training otherwise),
runs CG MD with each of the MD seeds (the config's `cgmd` settings, fm_ref's T0 friction) and
compares its RDF and ADF with the FG run's through thermocg.transfer, as the transferability table
does. Also times one energy+force call of each fitted model on a T0 frame (median of interleaved
calls, 1 thread), since order 3 has 16 angular rows per pair instead of 9.

    python benchmarks/bench_angular_order.py [--results results] [--config config/config.yaml]
        [--orders 2 3] [--seeds 2026 7] [--md-seeds 1 2 3 4] [--temperatures 300] [--jobs 2]

Writes benchmarks/results/angular_order_runs.tsv (one row per CG run) and angular_order.tsv (per
order and T: mean eps over the runs, its standard error, the FG floor, the call time) and prints
both. Work files go under benchmarks/results/angular_order/.
"""

import argparse
import copy
import logging
import statistics
import time
from multiprocessing import Pool
from pathlib import Path

import pandas as pd
import torch

from thermocg import cgmd, config as configuration, io, nn, train, transfer
from thermocg.config import temperature_label
from thermocg.neighbors import NeighborList

import results_table
from bench_data_efficiency import simulate

WORK = results_table.RESULTS / "angular_order"


def fit(args):
    """The force-matched model of one temperature's frames at one angular order and seed; its path."""
    order, seed, temperature, settings, results = args
    logging.basicConfig(level=logging.WARNING)
    config = copy.deepcopy(settings)
    config["network"]["angular_order"] = order
    config["seed"] = seed
    t0 = float(settings["reference_temperature"])
    label = temperature_label(temperature)
    kind = "fm_ref" if temperature == t0 else "fm_oracle"
    spec = configuration.model_spec_with_defaults({"kind": kind})
    path = WORK / "models" / f"order{order}_seed{seed}_T{label}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    train.train_model(kind, spec, config, beads={label: str(Path(results) / "cg" / f"T{label}" / "beads.npz")},
                      energies={}, model_path=path, curve_path=path.with_suffix(".tsv"),
                      checkpoint_path=path.with_suffix(".state"), temperature=None if kind == "fm_ref" else temperature)
    return (order, seed, temperature), path


def simulate_with_seed(args):
    *task, md_seed = args
    task[3] = {**task[3], "seed": md_seed}
    simulate(tuple(task))


def call_milliseconds(paths, beads_path, repeats=40):
    """Median ms of one energy+force call per model path, the calls interleaved (1 thread)."""
    torch.set_num_threads(1)
    frame = io.load_frames(beads_path)
    positions = torch.as_tensor(frame["positions"][-1], dtype=torch.float32)
    box = torch.as_tensor(frame["box"][-1])
    calls, times = {}, {}
    for key, path in paths.items():
        model = nn.load_model(path)[0]
        i, j, shift = NeighborList(model.cutoff, skin=0.15)(positions, box)
        layout = model.pair_layout(i, j, positions.shape[0])
        calls[key] = lambda model=model, i=i, j=j, shift=shift, layout=layout: nn.energy_and_forces(
            model, positions, i, j, shift, torch.tensor(0.0))
        times[key] = []
    for repeat in range(repeats + 5):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            if repeat >= 5:  # warm-up
                times[key].append(time.perf_counter() - start)
    return {key: 1e3 * statistics.median(values) for key, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 7], help="training seeds")
    parser.add_argument("--md-seeds", type=int, nargs="+", default=[1, 2, 3, 4], help="CG MD seeds per model")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K; default: T0")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    results = Path(args.results)
    settings = configuration.load(args.config)
    temperatures = args.temperatures or [float(settings["reference_temperature"])]
    friction = cgmd.read_friction(results / "cgmd" / "fm_ref" / "friction.json", settings["reference_temperature"])
    with Pool(args.jobs) as pool:
        fitted = dict(pool.map(fit, [(order, seed, t, settings, str(results))
                                     for order in args.orders for seed in args.seeds for t in temperatures]))
        runs = {}
        for (order, seed, temperature), path in fitted.items():
            for md_seed in args.md_seeds:
                runs[f"order{order}_seed{seed}_md{md_seed}"] = (order, seed, md_seed)
        tasks = [(str(fitted[(order, seed, t)]), str(results / "cg" / f"T{temperature_label(t)}" / "beads.npz"), t,
                  settings, friction, str(WORK / "cg" / name), md_seed)
                 for name, (order, seed, md_seed) in runs.items() for t in temperatures]
        pool.map(simulate_with_seed, tasks, chunksize=1)

    models = {name: {"kind": "fm", "trained_at": temperatures} for name in runs}
    table = transfer.transferability_table(models, temperatures, results / "observables" / "fg", WORK / "cg")
    table["angular_order"] = table["model"].map(lambda name: runs[name][0])
    table["seed"] = table["model"].map(lambda name: runs[name][1])
    table["md_seed"] = table["model"].map(lambda name: runs[name][2])
    columns = ["angular_order", "seed", "md_seed", "T_K", "eps_g", "eps_a", "eps_g_floor", "eps_a_floor"]
    per_run = table[columns].sort_values(["T_K", "angular_order", "seed", "md_seed"], ignore_index=True)
    results_table.write(per_run, results_table.RESULTS / "angular_order_runs.tsv")

    t0 = temperature_label(settings["reference_temperature"])
    milliseconds = call_milliseconds({key: path for key, path in fitted.items() if key[2] == temperatures[0]},
                                     results / "cg" / f"T{t0}" / "beads.npz")
    rows = []
    for (order, temperature), group in per_run.groupby(["angular_order", "T_K"]):
        n = len(group)
        rows.append({
            "angular_order": order, "T_K": temperature, "n_runs": n,
            "eps_g": group["eps_g"].mean(), "eps_g_se": group["eps_g"].std(ddof=1) / n**0.5,
            "eps_a": group["eps_a"].mean(), "eps_a_se": group["eps_a"].std(ddof=1) / n**0.5,
            "eps_g_floor": group["eps_g_floor"].iloc[0], "eps_a_floor": group["eps_a_floor"].iloc[0],
            "call_ms": statistics.median(ms for (o, _, _), ms in milliseconds.items() if o == order),
        })  # fmt: skip
    print()
    results_table.write(pd.DataFrame(rows), results_table.RESULTS / "angular_order.tsv")


if __name__ == "__main__":
    main()
