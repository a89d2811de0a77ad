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
        [--strides 8 4 2 1] [--temperatures K ...] [--models em trf1 trf2] [--jobs 2]

--temperatures defaults to the config's temperatures 150 K or more from T0 (450, 550, 700 K).

Writes benchmarks/results/data_efficiency.tsv and data_efficiency.png (work files under
benchmarks/results/data_efficiency/) and prints the table. Columns: stride, n_frames (training +
validation frames at T0), model, T_K, eps_g, eps_g_spread, eps_a, eps_a_spread, eps_g_floor,
eps_a_floor, eps_g_oracle, eps_a_oracle (the default run's fm_oracle at that T).
"""

import argparse
import copy
import logging
import sys
from multiprocessing import Pool
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter
import pandas as pd

from thermocg import cgmd, config as configuration, io, train, transfer
from thermocg.config import temperature_label

import results_table

OUT = Path(__file__).parent / "results"


def fit(args):
    """fm_ref, then the closed-form models on its W0, for one stride; returns {name: model path}."""
    stride, names, settings, t0_files, work = args
    logging.basicConfig(level=logging.WARNING)
    config = copy.deepcopy(settings)
    config["training"]["frame_stride"] = stride
    config["training"]["response_frame_stride"] = stride
    label = temperature_label(config["reference_temperature"])
    beads, energies = {label: t0_files["beads"]}, {label: t0_files["energies"]}
    paths = {}
    for name in ["fm_ref"] + names:
        spec = configuration.model_spec_with_defaults(settings["models"][name])
        path = work / f"stride{stride}" / "models" / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        train.train_model(
            name, spec, config, beads=beads, energies=energies if spec["kind"] != "fm_ref" else {},
            model_path=path, curve_path=path.with_suffix(".tsv"), checkpoint_path=path.with_suffix(".state"),
            w0_model=paths.get("fm_ref"))
        paths[name] = path
    return stride, paths


def simulate(args):
    """CG MD of one model at one T, then its observables, in the layout thermocg.transfer reads."""
    model_path, beads_path, temperature, settings, friction, cg_dir = args
    out = Path(cg_dir) / f"T{temperature_label(temperature)}"
    out.mkdir(parents=True, exist_ok=True)
    outputs = {k: str(out / name) for k, name in
               (("trajectory", "trajectory.dcd"), ("topology", "topology.pdb"), ("thermo", "thermo.tsv"),
                ("checkpoint", "state.npz"))}
    status = cgmd.simulate_or_record_blow_up(model_path, beads_path, temperature, settings["reference_temperature"],
                                             settings["cgmd"], friction, outputs, seed=settings["seed"])
    tables, summary = cgmd.run_observables(status, outputs["trajectory"], outputs["topology"], settings["cgmd"],
                                           settings["observables"], temperature)
    for name, table in tables.items():
        io.write_table(out / f"{name}.tsv", table)
    io.write_json(out / "summary.json", summary)


#: K from T0 from which issue 12 judges transfer
FAR_FROM_T0 = 150.0


def far_temperatures(settings):
    """The config's temperatures (K) FAR_FROM_T0 or more from T0, where issue 12 compares the models."""
    return [float(t) for t in settings["temperatures"] if abs(float(t) - settings["reference_temperature"]) >= FAR_FROM_T0]


def n_frames(settings, stride, beads_path):
    total = len(io.load_frames(beads_path)["time"])
    split = train.split_indices(total, settings["training"]["validation_fraction"], settings["training"]["test_fraction"], stride)
    return len(split["train"]) + len(split["validation"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--strides", type=int, nargs="+", default=[8, 4, 2, 1])
    parser.add_argument("--temperatures", type=float, nargs="+",
                        help="K; default: the config's temperatures 150 K or more from T0")
    parser.add_argument("--models", nargs="+", default=["em", "trf1", "trf2"], help="T0-only model names of the config")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the table of an earlier run")
    args = parser.parse_args()
    if args.plot_only:
        plot(io.read_table(results_table.RESULTS / "data_efficiency.tsv"), OUT / "data_efficiency.png")
        return

    results = Path(args.results)
    settings = configuration.load(args.config)
    t0 = temperature_label(settings["reference_temperature"])
    temperatures = args.temperatures or far_temperatures(settings)
    t0_files = {"beads": results / "cg" / f"T{t0}" / "beads.npz", "energies": results / "cg" / f"T{t0}" / "molecule_energies.npz"}
    friction = cgmd.read_friction(results / "cgmd" / "fm_ref" / "friction.json", settings["reference_temperature"])
    work = OUT / "data_efficiency"
    names = ["fm_ref"] + args.models

    with Pool(args.jobs) as pool:
        fitted = dict(pool.map(fit, [(s, args.models, settings, t0_files, work) for s in args.strides]))
        tasks = [(str(fitted[s][name]), str(results / "cg" / f"T{temperature_label(t)}" / "beads.npz"), t, settings,
                  friction, str(work / f"stride{s}" / "cg" / name))
                 for s in args.strides for name in names for t in temperatures]
        pool.map(simulate, tasks, chunksize=1)

    oracle = io.read_table(results / "metrics" / "transferability.tsv")
    oracle = oracle[oracle["kind"] == "fm_oracle"].set_index("T_K")
    rows = []
    for stride in args.strides:
        models = {name: {"kind": settings["models"][name]["kind"], "trained_at": [settings["reference_temperature"]]}
                  for name in names}
        table = transfer.transferability_table(models, temperatures, results / "observables" / "fg",
                                               work / f"stride{stride}" / "cg")
        table.insert(0, "n_frames", n_frames(settings, stride, t0_files["beads"]))
        table.insert(0, "stride", stride)
        table["eps_g_oracle"] = table["T_K"].map(oracle["eps_g"])
        table["eps_a_oracle"] = table["T_K"].map(oracle["eps_a"])
        rows.append(table)
    columns = ["stride", "n_frames", "model", "T_K", "eps_g", "eps_g_spread", "eps_a", "eps_a_spread",
               "eps_g_floor", "eps_a_floor", "eps_g_oracle", "eps_a_oracle"]
    table = pd.concat(rows, ignore_index=True)[columns].sort_values(["T_K", "model", "n_frames"], ignore_index=True)
    results_table.write(table, results_table.RESULTS / "data_efficiency.tsv")
    plot(table, OUT / "data_efficiency.png")


def plot(table, path):
    from thermocg.plots import _model_style

    temperatures = sorted(table["T_K"].unique())
    figure, axes = plt.subplots(2, len(temperatures), figsize=(4.5 * len(temperatures), 7), squeeze=False)
    for column, temperature in enumerate(temperatures):
        at_t = table[table["T_K"] == temperature]
        for row, (eps, unit) in enumerate((("eps_g", ""), ("eps_a", " (1/deg)"))):
            ax = axes[row, column]
            frames = sorted(at_t["n_frames"].unique())
            floor, oracle = at_t[f"{eps}_floor"].iloc[0], at_t[f"{eps}_oracle"].iloc[0]
            ax.axhspan(0, floor, color="0.85", label="FG noise floor")
            ax.axhline(oracle, color="dimgray", ls=":", label="fm_oracle (default run)")
            for name, curve in at_t.groupby("model"):
                colour, style = _model_style(name)
                ax.errorbar(curve["n_frames"], curve[eps], yerr=curve[f"{eps}_spread"], color=colour, ls=style,
                            marker="o", capsize=3, label=name)
            ax.set(xscale="log", xlabel="T0 frames (training + validation)", ylabel=eps + unit,
                   title=f"{temperature:g} K", ylim=(0, None))
            ax.xaxis.set_major_locator(FixedLocator(frames))
            ax.xaxis.set_major_formatter(FixedFormatter([str(f) for f in frames]))
            ax.xaxis.set_minor_formatter(NullFormatter())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    figure.suptitle("Data efficiency: eps at the far temperatures against the number of T0 frames\n"
                    "(error bars: spread over the two halves of each CG run)")
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
