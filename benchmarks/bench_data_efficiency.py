"""Data efficiency of the T0-only models: eps_g and eps_a at the far temperatures against the number of T0 frames.

Needs a finished default run (its T0 frames and energies, its FG observables and, for the oracle's
line, its transferability table). For each frame stride k, every k-th T0 frame of the training and
validation parts (the test part is left out, as in the pipeline) trains fm_ref (networks:
`training.frame_stride` = k) and, on that W0, the closed-form em, trf1 and trf2
(`training.response_frame_stride` = k); each model then runs CG MD at the chosen temperatures with
the config's `cgmd` settings and one friction (fm_ref's fitted T0 friction from the run, so the
structure is compared at equal dynamics). eps_g, eps_a, their CG-halves spreads and the FG floor
come from thermocg.transfer, exactly as in the transferability table.

    python benchmarks/bench_data_efficiency.py [--results results] [--config config/config.yaml]
        [--strides 8 4 2 1] [--t0-run RESULTS STRIDE ...] [--temperatures K ...] [--models em trf1 trf2]
        [--cg-seeds SEED ...] [--w0 MODEL] [--jobs 2]

--temperatures defaults to the config's temperatures 150 K or more from T0 (450, 550, 700 K).
--t0-run (repeatable) takes the T0 frames from another run's results directory as well, with its own
strides: a longer or more densely saved T0 run of the same config (its `fg` settings changed), so
that the number of frames and the trajectory time they span can be told apart. Everything else
(FG observables, friction, oracle) still comes from --results. --cg-seeds runs each model's CG MD
once per seed (default: the config's seed, which with the config's stride reproduces the run's own
fm_ref numbers). --w0 keeps one fm_ref (a model file trained on --results' own T0 frames, e.g. the
run's results/models/fm_ref/model.pt) at every point and fits only the closed-form models on every
k-th frame: what their own data do, with W0 held fixed (the runs' label says "W0 fixed"; its files
are named data_efficiency_w0*, its work files under data_efficiency_w0/).

Writes, under benchmarks/results/ (work files in data_efficiency/), data_efficiency_runs.tsv (one
row per CG run), data_efficiency.tsv (per point: the mean over the CG seeds, eps_*_se the standard
error over them, n_cg_seeds) and data_efficiency.png, and prints the tables. Columns: t0_run (the
T0 run's length and frame spacing), stride, n_frames (training + validation frames at T0), model,
T_K, cg_seed, eps_g, eps_g_spread (over the two halves of a CG run), eps_a, eps_a_spread,
eps_g_floor, eps_a_floor, eps_g_oracle, eps_a_oracle (the default run's fm_oracle at that T).
"""

import argparse
import copy
import itertools
import logging
import shutil
import sys
from multiprocessing import Pool
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import results_table
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

from thermocg import cgmd, io, observables, train, transfer
from thermocg import config as configuration
from thermocg.config import temperature_label

#: where the table, the figure and the work files go (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")


def fit(args):
    """fm_ref (or the given W0 model), then the closed-form models on its W0, for one T0 run and stride;
    returns (key, {name: model path})."""
    key, names, settings, t0_files, work, w0 = args
    stride = key[1]
    logging.basicConfig(level=logging.WARNING)
    config = copy.deepcopy(settings)
    config["training"]["frame_stride"] = stride
    config["training"]["response_frame_stride"] = stride
    label = temperature_label(config["reference_temperature"])
    beads, energies = {label: t0_files["beads"]}, {label: t0_files["energies"]}
    paths = {} if w0 is None else {"fm_ref": Path(w0)}
    for name in [n for n in ["fm_ref"] + names if n not in paths]:
        spec = configuration.model_spec_with_defaults(settings["models"][name])
        path = work / "models" / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        train.train_model(
            name, spec, config, beads=beads, energies=energies if spec["kind"] != "fm_ref" else {},
            model_path=path, curve_path=path.with_suffix(".tsv"), checkpoint_path=path.with_suffix(".state"),
            w0_model=paths.get("fm_ref"))
        paths[name] = path
    return key, paths


def simulate(args):
    """CG MD of one model at one T, then its observables, in the layout thermocg.transfer reads."""
    model_path, beads_path, temperature, settings, friction, seed, cg_dir = args
    out = Path(cg_dir) / f"T{temperature_label(temperature)}"
    out.mkdir(parents=True, exist_ok=True)
    outputs = {k: str(out / name) for k, name in
               (("trajectory", "trajectory.dcd"), ("topology", "topology.pdb"), ("thermo", "thermo.tsv"),
                ("checkpoint", "state.npz"))}
    status = cgmd.simulate_or_record_blow_up(model_path, beads_path, temperature, settings["reference_temperature"],
                                             settings["cgmd"], friction, outputs, seed=seed)
    tables, summary = observables.of_cg_run(status, outputs["trajectory"], outputs["topology"], settings["cgmd"],
                                            settings["observables"], temperature)
    for name, table in tables.items():
        io.write_table(out / f"{name}.tsv", table)
    io.write_json(out / "summary.json", summary)


#: K from T0 from which issue 12 judges transfer
FAR_FROM_T0 = 150.0


def far_temperatures(settings):
    """The config's temperatures (K) FAR_FROM_T0 or more from T0, where issue 12 compares the models."""
    return [float(t) for t in settings["temperatures"] if abs(float(t) - settings["reference_temperature"]) >= FAR_FROM_T0]


def n_frames(settings, stride, total):
    """Training + validation frames at ``stride`` of a T0 run of ``total`` frames."""
    split = train.split_indices(total, settings["training"]["validation_fraction"], settings["training"]["test_fraction"], stride)
    return len(split["train"]) + len(split["validation"])


def t0_run_label(time):
    """A T0 run's length and frame spacing from its frame times, e.g. "60 ps, frames 0.1 ps apart":
    what tells runs apart."""
    interval = float(time[1] - time[0])
    return f"{len(time) * interval:.4g} ps, frames {interval:.4g} ps apart"


def t0_files(results, settings):
    t0 = temperature_label(settings["reference_temperature"])
    return {"beads": results / "cg" / f"T{t0}" / "beads.npz", "energies": results / "cg" / f"T{t0}" / "molecule_energies.npz"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--strides", type=int, nargs="+", default=[8, 4, 2, 1], help="strides of --results' own T0 run")
    parser.add_argument("--t0-run", nargs="+", action="append", metavar="RESULTS STRIDE",
                        help="another T0 run's results directory and its strides, e.g. --t0-run ../long/results 9 3")
    parser.add_argument("--temperatures", type=float, nargs="+",
                        help="K; default: the config's temperatures 150 K or more from T0")
    parser.add_argument("--models", nargs="+", default=["em", "trf1", "trf2"], help="T0-only model names of the config")
    parser.add_argument("--cg-seeds", type=int, nargs="+", help="CG MD seeds, each a run per point; default: the config's seed")
    parser.add_argument("--w0", metavar="MODEL",
                        help="fit the closed-form models at every point on this fm_ref model (trained on --results' own "
                             "T0 frames, e.g. results/models/fm_ref/model.pt) instead of on an fm_ref retrained on "
                             "those frames: only their own data change (not with --t0-run)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the table of an earlier run")
    args = parser.parse_args()
    stem = "data_efficiency_w0" if args.w0 else "data_efficiency"  # a fixed W0's runs apart from the others
    if args.plot_only:
        plot(io.read_table(OUT / f"{stem}.tsv"), OUT / f"{stem}.png")
        return

    if args.w0 and args.t0_run:
        parser.error("--w0 is an fm_ref of --results' own T0 frames: it cannot serve --t0-run's")
    if args.w0 and not Path(args.w0).is_file():
        parser.error(f"--w0 {args.w0}: no such model file")
    results = Path(args.results)
    settings = configuration.load(args.config)
    temperatures = args.temperatures or far_temperatures(settings)
    runs = [(results, args.strides)] + [(Path(run[0]), t0_run_strides(parser, run)) for run in args.t0_run or []]
    files = [t0_files(run, settings) for run, _ in runs]
    for run_files in files:
        for path in run_files.values():
            if not path.exists():
                parser.error(f"{path} is missing: a T0 run needs its beads and per-molecule energies")
    times = [io.load_frames(run_files["beads"])["time"] for run_files in files]
    labels = []
    for (run, _), time in zip(runs, times):
        label = t0_run_label(time) + (", W0 fixed" if args.w0 else "")
        labels.append(label if label not in labels else f"{label} ({run})")  # two runs alike: name the folder too
    friction = cgmd.read_friction(results / "cgmd" / "fm_ref" / "friction.json", settings["reference_temperature"])
    work = OUT / stem
    names = ["fm_ref"] + args.models
    keys = [(i, stride) for i, (_, strides) in enumerate(runs) for stride in strides]
    work_of = {(i, stride): work / f"run{i}" / f"stride{stride}" for i, stride in keys}
    seeds = args.cg_seeds or [settings["seed"]]

    # with a fixed W0, fm_ref is one model: its CG runs are made once, at the first point, and the others link to them
    shared_runs = {seed: work_of[keys[0]] / f"cg_seed{seed}" / "fm_ref" for seed in seeds}
    for first in shared_runs.values():
        if args.w0 and first.is_symlink():  # a link left by a run with the points in another order
            first.unlink()
    with Pool(args.jobs) as pool:
        fitted = dict(pool.map(fit, [(key, args.models, settings, files[key[0]], work_of[key], args.w0) for key in keys]))
        simulated = [(key, name) for key in keys for name in names if not (args.w0 and name == "fm_ref" and key != keys[0])]
        tasks = [(str(fitted[key][name]), str(results / "cg" / f"T{temperature_label(t)}" / "beads.npz"), t, settings,
                  friction, seed, str(work_of[key] / f"cg_seed{seed}" / name))
                 for key, name in simulated for seed in seeds for t in temperatures]
        pool.map(simulate, tasks, chunksize=1)
    if args.w0:
        for key, seed in itertools.product(keys[1:], seeds):
            shared = work_of[key] / f"cg_seed{seed}" / "fm_ref"
            if shared.is_symlink():
                shared.unlink()
            elif shared.exists():  # an earlier run's, where this point came first
                shutil.rmtree(shared)
            shared.symlink_to(shared_runs[seed].resolve(), target_is_directory=True)

    oracle = io.read_table(results / "metrics" / "transferability.tsv")
    oracle = oracle[oracle["kind"] == "fm_oracle"].set_index("T_K")
    models = {name: {"kind": settings["models"][name]["kind"], "trained_at": [settings["reference_temperature"]]}
              for name in names}
    rows = []
    for (i, stride), seed in itertools.product(keys, seeds):
        table = transfer.transferability_table(models, temperatures, results / "observables" / "fg",
                                               work_of[i, stride] / f"cg_seed{seed}")
        table.insert(0, "cg_seed", seed)
        table.insert(0, "n_frames", n_frames(settings, stride, len(times[i])))
        table.insert(0, "stride", stride)
        table.insert(0, "t0_run", labels[i])
        table["eps_g_oracle"] = table["T_K"].map(oracle["eps_g"])
        table["eps_a_oracle"] = table["T_K"].map(oracle["eps_a"])
        rows.append(table)
    point = ["t0_run", "stride", "n_frames", "model", "T_K"]
    fixed = ["eps_g_floor", "eps_a_floor", "eps_g_oracle", "eps_a_oracle"]
    per_run = pd.concat(rows, ignore_index=True)[point + ["cg_seed", "eps_g", "eps_g_spread", "eps_a", "eps_a_spread"] + fixed]
    results_table.write(per_run.sort_values(["T_K", "model"], kind="stable", ignore_index=True), OUT / f"{stem}_runs.tsv")
    table = over_cg_seeds(per_run, point, fixed)
    results_table.write(table, OUT / f"{stem}.tsv")
    plot(table, OUT / f"{stem}.png")


def over_cg_seeds(per_run, point, fixed):
    """One row per point: eps and the CG halves' spread averaged over the CG seeds, the SE over seeds
    (NaN with one seed) and their number."""
    grouped = per_run.groupby(point, sort=False)
    table = grouped[["eps_g", "eps_g_spread", "eps_a", "eps_a_spread"] + fixed].mean()
    for eps in ("eps_g", "eps_a"):
        table[f"{eps}_se"] = grouped[eps].std(ddof=1) / grouped[eps].count() ** 0.5
    table["n_cg_seeds"] = grouped["eps_g"].count()
    columns = ["eps_g", "eps_g_se", "eps_g_spread", "eps_a", "eps_a_se", "eps_a_spread", "n_cg_seeds"] + fixed
    # stable: the runs stay in the order given (the default run first), their points by frame count
    return table[columns].reset_index().sort_values(["T_K", "model"], kind="stable", ignore_index=True)


def t0_run_strides(parser, run):
    """The strides of one --t0-run RESULTS STRIDE ... option."""
    try:
        strides = [int(stride) for stride in run[1:]]
    except ValueError:
        strides = []
    if not strides or min(strides) < 1:
        parser.error(f"--t0-run {' '.join(run)}: give the results directory, then one or more strides (positive integers)")
    return strides


def frame_labels(frames, table):
    """Tick labels of the frame counts, blank where a label would overlap one before it on the log
    axis (the first run's counts first)."""
    first_run = set(table.loc[table["t0_run"] == table["t0_run"].iloc[0], "n_frames"])
    labelled = []
    for count in sorted(frames, key=lambda count: count not in first_run):
        if all(abs(np.log10(count / other)) > 0.12 for other in labelled):
            labelled.append(count)
    return [str(count) if count in labelled else "" for count in frames]


#: one marker per T0 run, in the order the runs were given
RUN_MARKERS = "osD^v"


def plot(table, path):
    from matplotlib.lines import Line2D

    from thermocg.plots import _model_style

    temperatures = sorted(table["T_K"].unique())
    runs = list(dict.fromkeys(table["t0_run"]))
    over_seeds = "n_cg_seeds" in table and (table["n_cg_seeds"] > 1).all()
    error_bar, error_bars = ("se", "standard error over CG seeds") if over_seeds else ("spread", "spread over the two halves of each CG run")
    width = max(4.5 * len(temperatures), 9)  # room for the title and the legend with one temperature
    figure, axes = plt.subplots(2, len(temperatures), figsize=(width, 7), squeeze=False)
    for column, temperature in enumerate(temperatures):
        at_t = table[table["T_K"] == temperature]
        for row, (eps, unit) in enumerate((("eps_g", ""), ("eps_a", " (1/deg)"))):
            ax = axes[row, column]
            frames = sorted(at_t["n_frames"].unique())
            floor, oracle = at_t[f"{eps}_floor"].iloc[0], at_t[f"{eps}_oracle"].iloc[0]
            ax.axhspan(0, floor, color="0.85", label="FG noise floor")
            ax.axhline(oracle, color="dimgray", ls=":", label="fm_oracle (default run)")
            for name, curves in at_t.groupby("model"):
                colour, style = _model_style(name)
                for run, curve in curves.groupby("t0_run", sort=False):
                    first = run == runs[0]
                    ax.errorbar(curve["n_frames"], curve[eps], yerr=curve[f"{eps}_{error_bar}"], color=colour,
                                ls=style if first else ":", marker=RUN_MARKERS[runs.index(run) % len(RUN_MARKERS)],
                                mfc=colour if first else "white", capsize=3, label=name if first else "_other run")
            ax.set(xscale="log", xlabel="T0 frames (training + validation)", ylabel=eps + unit,
                   title=f"{temperature:g} K", ylim=(0, None))
            ax.xaxis.set_major_locator(FixedLocator(frames))
            ax.xaxis.set_major_formatter(FixedFormatter(frame_labels(frames, at_t)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(axis="x", labelrotation=45 if len(frames) > 5 else 0)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for i, run in enumerate(runs):  # which marker is which T0 run (and, with --w0, that W0 was fixed)
        handles.append(Line2D([], [], color="0.3", ls="-" if i == 0 else ":", marker=RUN_MARKERS[i % len(RUN_MARKERS)],
                              mfc="0.3" if i == 0 else "white"))
        labels.append(f"T0 run: {run}")
    columns = min(len(labels), 6 if width > 10 else 3)
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=9)
    figure.suptitle("Data efficiency: eps at the far temperatures against the number of T0 frames\n"
                    f"(error bars: {error_bars})")
    legend_rows = -(-len(labels) // columns)
    figure.tight_layout(rect=(0, 0.015 + 0.035 * legend_rows, 1, 1))
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
