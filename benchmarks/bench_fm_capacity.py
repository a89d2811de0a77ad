"""Force matching with more capacity or more data: eps_g and eps_a of config variants (issue 12).

Needs a finished default run (its CG frames, FG observables and fm_ref's fitted friction). A
variant is the run's config with some keys changed: `--variant NAME KEY=VALUE ...`, KEY a dotted
path of the config (network.angular_order=3, network.n_interaction_layers=2,
training.frame_stride=1, training.max_epochs=60); a variant with no changes is the run's own
force field, and with the config's seeds it reproduces the run's fm_ref to the last bit. For each
variant, training seed and temperature it fits the force-matched model of the run's frames (fm_ref
at T0, fm_oracle elsewhere), runs CG MD with each MD seed (the config's `cgmd` settings, fm_ref's
T0 friction) and compares its RDF and ADF with the FG run's through thermocg.transfer, as the
transferability table does. `--t0-run NAME RESULTS` (repeatable) also trains every variant, or
the variants named after RESULTS, on the T0 frames of another run of the same config (a longer T0
run, say), evaluated against the same FG observables. Also times one energy+force call of each
variant on a T0 frame (median of interleaved calls, 1 thread).

    python benchmarks/bench_fm_capacity.py [--results results] [--config config/config.yaml]
        --variant NAME [KEY=VALUE ...] [--variant ...] [--t0-run NAME RESULTS [VARIANT ...]] [--seeds 2026 7]
        [--md-seeds 1 2 3 4] [--temperatures 300 250] [--jobs 2]

Writes, under benchmarks/results/ (work files in fm_capacity/), fm_capacity_runs.tsv (one row per
CG run) and fm_capacity.tsv (per variant, training frames and T: the mean eps over the runs, its
standard error, the FG floor, n_frames (training + validation frames), the median fit time and
the call time), and prints both.
"""

import argparse
import copy
import logging
import statistics
import time
from multiprocessing import Pool
from pathlib import Path

import pandas as pd
import results_table
import torch
from bench_data_efficiency import n_frames, simulate

from thermocg import cgmd, io, nn, train, transfer
from thermocg import config as configuration
from thermocg.config import temperature_label
from thermocg.neighbors import NeighborList

#: where the tables and the work files go (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")
#: the training frames of --results' own runs
OWN_FRAMES = "this run"


def variant_config(settings, changes):
    """The config with each "section.key=value" of ``changes`` set (values read as YAML), checked.

    An unknown key or a value the schema refuses raises ConfigError, as in the pipeline.
    """
    config = copy.deepcopy(settings)
    for change in changes:
        path, separator, value = change.partition("=")
        if not separator:
            raise configuration.ConfigError(f"variant change {change!r} is not KEY=VALUE")
        *sections, key = path.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value  # text, read as the schema's type by configuration.check
    return configuration.check(config)


def fit(args):
    """One force-matched model; returns (key, model path, fit seconds)."""
    key, config, beads, work = args
    variant, frames, seed, temperature = key
    logging.basicConfig(level=logging.WARNING)
    config = {**config, "seed": seed}
    label = temperature_label(temperature)
    kind = "fm_ref" if temperature == float(config["reference_temperature"]) else "fm_oracle"
    spec = configuration.model_spec_with_defaults({"kind": kind})
    path = work / "models" / f"{variant}_{frames}_seed{seed}_T{label}.pt".replace(" ", "_")
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train.train_model(kind, spec, config, beads={label: str(beads)}, energies={}, model_path=path,
                      curve_path=path.with_suffix(".tsv"), checkpoint_path=path.with_suffix(".state"),
                      temperature=None if kind == "fm_ref" else temperature)
    return key, path, time.perf_counter() - start


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
        calls[key] = lambda model=model, i=i, j=j, shift=shift: nn.energy_and_forces(
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
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE]",
                        help="a name and the config keys it changes, e.g. --variant layers2 network.n_interaction_layers=2")
    parser.add_argument("--t0-run", nargs="+", action="append", default=[], metavar="NAME RESULTS [VARIANT]",
                        help="also train these variants (default: all) at T0 on another run's T0 frames, "
                             "e.g. --t0-run 540ps ../long/results as_run")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds; default: the config's seed")
    parser.add_argument("--md-seeds", type=int, nargs="+", help="CG MD seeds per model; default: the config's seed")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K; default: T0")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    results = Path(args.results)
    settings = configuration.load(args.config)
    t0 = float(settings["reference_temperature"])
    try:
        variants = {name: variant_config(settings, changes) for name, *changes in args.variant}
    except configuration.ConfigError as error:
        parser.error(f"a variant's changes: {error}")
    if len(variants) < len(args.variant):
        parser.error("two variants have the same name")
    temperatures = args.temperatures or [t0]
    seeds, md_seeds = args.seeds or [settings["seed"]], args.md_seeds or [settings["seed"]]
    frame_files = {(OWN_FRAMES, t): results / "cg" / f"T{temperature_label(t)}" / "beads.npz" for t in temperatures}
    trained = {key: list(variants) for key in frame_files}
    for name, *rest in args.t0_run:
        if not rest or t0 not in temperatures:
            parser.error("--t0-run needs a name and a results directory, and T0 among the temperatures")
        other, *chosen = rest
        unknown = set(chosen) - set(variants)
        if unknown or name == OWN_FRAMES:
            parser.error(f"--t0-run {name}: no variant named {sorted(unknown)}" if unknown else f"--t0-run: {name!r} is taken")
        frame_files[(name, t0)] = Path(other) / "cg" / f"T{temperature_label(t0)}" / "beads.npz"
        trained[(name, t0)] = chosen or list(variants)
    for path in frame_files.values():
        if not path.exists():
            parser.error(f"{path} is missing: run the pipeline there first")

    work = OUT / "fm_capacity"
    fits = [((variant, frames, seed, t), variants[variant], frame_files[(frames, t)], work)
            for (frames, t), names in trained.items() for variant in names for seed in seeds]
    friction = cgmd.read_friction(results / "cgmd" / "fm_ref" / "friction.json", t0)
    with Pool(args.jobs) as pool:
        fitted = {key: (path, seconds) for key, path, seconds in pool.map(fit, fits, chunksize=1)}
        runs = {f"run{number}": (key, md_seed) for number, (key, md_seed) in
                enumerate((key, md_seed) for key in fitted for md_seed in md_seeds)}
        pool.map(simulate, [(str(fitted[key][0]), str(frame_files[(OWN_FRAMES, key[3])]), key[3], variants[key[0]],
                             friction, md_seed, str(work / "cg" / name)) for name, (key, md_seed) in runs.items()],
                 chunksize=1)

    models = {name: {"kind": "fm", "trained_at": [key[3]]} for name, (key, _) in runs.items()}
    table = transfer.transferability_table(models, temperatures, results / "observables" / "fg", work / "cg")
    for column, position in (("variant", 0), ("frames", 1), ("seed", 2)):
        table[column] = [runs[name][0][position] for name in table["model"]]
    table["md_seed"] = [runs[name][1] for name in table["model"]]
    columns = ["variant", "frames", "seed", "md_seed", "T_K", "eps_g", "eps_a", "eps_g_floor", "eps_a_floor"]
    per_run = table[columns].sort_values(["T_K", "frames", "variant", "seed", "md_seed"], ignore_index=True)
    results_table.write(per_run, OUT / "fm_capacity_runs.tsv")

    call_frames = frame_files.get((OWN_FRAMES, t0), frame_files[(OWN_FRAMES, temperatures[0])])
    milliseconds = call_milliseconds({variant: fitted[next(key for key in fitted if key[0] == variant)][0]
                                      for variant in variants}, call_frames)
    totals = {key: len(io.load_frames(path)["time"]) for key, path in frame_files.items()}  # once per archive
    rows = []
    for (variant, frames, temperature), group in per_run.groupby(["variant", "frames", "T_K"], sort=False):
        n = len(group)
        config = variants[variant]
        rows.append({
            "variant": variant, "frames": frames, "T_K": temperature, "n_runs": n,
            "n_frames": n_frames(config, config["training"]["frame_stride"], totals[(frames, temperature)]),
            "eps_g": group["eps_g"].mean(), "eps_g_se": group["eps_g"].std(ddof=1) / n**0.5 if n > 1 else float("nan"),
            "eps_a": group["eps_a"].mean(), "eps_a_se": group["eps_a"].std(ddof=1) / n**0.5 if n > 1 else float("nan"),
            "eps_g_floor": group["eps_g_floor"].iloc[0], "eps_a_floor": group["eps_a_floor"].iloc[0],
            "fit_s": statistics.median(seconds for key, (_, seconds) in fitted.items()
                                       if key[:2] == (variant, frames) and key[3] == temperature),
            "call_ms": milliseconds[variant],
        })  # fmt: skip
    print()
    results_table.write(pd.DataFrame(rows), OUT / "fm_capacity.tsv")


if __name__ == "__main__":
    main()
