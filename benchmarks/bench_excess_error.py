"""The error beyond sampling noise: eps_g and eps_a with the noise of the CG and FG runs taken out.

Needs a finished default run. Every eps of the transferability table compares one 10 ps CG run
with one FG run, and both carry sampling noise: a model without any systematic error would still
score about the FG noise floor. Here each model runs CG MD once per --cg-seeds at each temperature,
as the pipeline's cgmd does (the run's model file and friction; at T0 the kinds that share fm_ref's
force field there run fm_ref's), and the run's FG trajectory at that temperature is cut into
blocks as long as one CG production (--fg-block). `thermocg.transfer.excess_error` compares the
means over the replicas and removes the noise both means carry, estimated from the replicas'
spread: the excess is the error against runs without noise (negative: below what the replicas
resolve). Standard errors by the jackknife over CG seeds and FG blocks; each model's excess over
fm_ref's (and over fm_oracle's) with the FG blocks paired.

    python benchmarks/bench_excess_error.py [--results results] [--config config/config.yaml]
        [--models fm_ref trf1 ...] [--temperatures K ...] [--cg-seeds 2026 1 2 3] [--fg-block PS] [--jobs 2]

--models: config entries, or refined models with a file in results/models (default: every entry).
--temperatures: default the config's. --cg-seeds: the first seed of the default, the config's, is the
run's own CG run (its eps against the FG run are the transferability table's). --fg-block: ps, default
the config's cgmd.production.

Writes, under benchmarks/results/ (work files in excess_error/, replaced on each start):
excess_error_runs.tsv (one row per CG run: eps_g, eps_a against the FG run, as in the table) and
excess_error.tsv (per model and T: n_cg, n_fg (blocks), eps_* of the means, eps_*_noise, eps_*_excess
and its SE, eps_*_excess_ratio_fm_ref and _oracle with SEs), and prints the second.
"""

import argparse
import logging
import shutil
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from bench_prior import model_path

from thermocg import cgmd, io, kinds, observables, transfer
from thermocg import config as configuration
from thermocg.config import temperature_label

#: where the tables and the work files go (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")


def profiles(beads, settings):
    """(r, g, theta, p) of a bead trajectory (``settings``: the config's observables section)."""
    r, g = observables.rdf(beads["positions"], beads["box"], settings["rdf_bin_width"])
    theta, p = observables.adf(beads["positions"], beads["box"], settings["adf_shell"], settings["adf_bin_width"])
    return r, g, theta, p


def cg_replica(args):
    """CG MD of one model file at one T with one seed, as the pipeline's cgmd; its profiles, or None if it blew up."""
    key, model_file, beads_path, friction, temperature, seed, config, work = args
    logging.basicConfig(level=logging.WARNING)
    stem = work / f"{key[0]}_T{temperature_label(temperature)}_seed{seed}"
    outputs = {k: f"{stem}.{suffix}" for k, suffix in
               (("trajectory", "dcd"), ("topology", "pdb"), ("thermo", "tsv"), ("checkpoint", "ckpt"))}
    status = cgmd.simulate_or_record_blow_up(str(model_file), beads_path, temperature, config["reference_temperature"],
                                             config["cgmd"], friction, outputs, seed=seed)
    if not status["stable"]:
        return key, seed, None
    beads = observables.trajectory_beads(outputs["trajectory"], outputs["topology"], config["cgmd"], temperature)
    return key, seed, profiles(beads, config["observables"])


def fg_blocks(beads_path, block_ps, settings):
    """(r, g blocks, theta, p blocks) of consecutive blocks of ``block_ps`` of an FG bead trajectory."""
    beads = io.load_frames(beads_path)
    interval = float(beads["time"][1] - beads["time"][0])
    size = round(block_ps / interval)
    n_blocks = len(beads["time"]) // size
    if n_blocks < 3:
        raise SystemExit(f"{beads_path}: {len(beads['time'])} frames make {n_blocks} blocks of {block_ps} ps; "
                         "the jackknife needs 3: give a shorter --fg-block")
    blocks = [profiles({k: beads[k][b * size:(b + 1) * size] for k in ("positions", "box")}, settings) for b in range(n_blocks)]
    return blocks[0][0], np.stack([b[1] for b in blocks]), blocks[0][2], np.stack([b[3] for b in blocks])


def stacked(replicas, run, temperature, seeds):
    """{"g": (r, CG replicas (seeds, bins)), "a": (theta, ...)} of one run, or None if a seed blew up."""
    found = [replicas[(run, temperature)][seed] for seed in seeds]
    if any(result is None for result in found):
        return None
    return {"g": (found[0][0], np.stack([result[1] for result in found])),
            "a": (found[0][2], np.stack([result[3] for result in found]))}


def metric_columns(metric, own, fg, references):
    """One metric's columns of a summary row: eps, noise and excess of the means of ``own``'s
    replicas against the FG blocks ``fg`` (as from :func:`fg_blocks`), the excess's standard error,
    and its ratio to each of ``references`` ({label: replicas as ``own``, "same" for the same run,
    or None}), the FG blocks paired."""
    columns = {f"eps_{metric}{suffix}": np.nan for suffix in ("", "_noise", "_excess", "_excess_se")}
    columns.update({f"eps_{metric}_excess_ratio_{label}{se}": np.nan for label in references for se in ("", "_se")})
    if own is None:
        return columns
    x_fg, fg_replicas = {"g": fg[:2], "a": fg[2:]}[metric]

    def excess(grid, replicas, fg_replicas):
        return transfer.excess_error(grid, replicas, x_fg, fg_replicas, metric)["excess"]

    grid, replicas = own[metric]
    found = transfer.excess_error(grid, replicas, x_fg, fg_replicas, metric)
    columns.update({f"eps_{metric}": found["eps"], f"eps_{metric}_noise": found["noise"], f"eps_{metric}_excess": found["excess"],
                    f"eps_{metric}_excess_se": transfer.jackknife_standard_error(
                        lambda cg, blocks: excess(grid, cg, blocks), [replicas, fg_replicas])})
    for label, theirs in references.items():
        ratio, se = (1.0, 0.0) if theirs == "same" else (np.nan, np.nan)
        if theirs is not None and theirs != "same":
            their_grid, their_replicas = theirs[metric]

            def quotient(mine, their, blocks, their_grid=their_grid):
                return excess(grid, mine, blocks) / excess(their_grid, their, blocks)

            ratio = quotient(replicas, their_replicas, fg_replicas)
            se = transfer.jackknife_standard_error(quotient, [replicas, their_replicas, fg_replicas])
        columns[f"eps_{metric}_excess_ratio_{label}"], columns[f"eps_{metric}_excess_ratio_{label}_se"] = ratio, se
    return columns


def resolve(config, results, name, temperature):
    """(the model whose CG run stands for ``name`` at ``temperature``, its model file, its friction file)."""
    label = temperature_label(temperature)
    spec = config["models"].get(name)
    if spec is None:  # a refinement (DiffSim): its own file at every T
        return name, results / f"models/{name}/model.pt", results / f"cgmd/{name}/friction.json"
    fm_ref = next(other for other, entry in config["models"].items() if entry["kind"] == "fm_ref")
    run = fm_ref if float(temperature) == float(config["reference_temperature"]) and spec["kind"] in kinds.SAME_AS_FM_REF_AT_T0 else name
    return run, model_path(results, config, run, label), results / f"cgmd/{run}/friction.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--models", nargs="+", help="config entries or refined models (default: every entry)")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K (default: the config's)")
    parser.add_argument("--cg-seeds", type=int, nargs="+", help="default: the config's seed and three others (1 2 3)")
    parser.add_argument("--fg-block", type=float, help="ps per FG block (default: cgmd.production)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    config = configuration.load(args.config)
    results = Path(args.results)
    names = args.models or list(config["models"])
    temperatures = args.temperatures or [float(t) for t in config["temperatures"]]
    seeds = args.cg_seeds or [config["seed"]] + [seed for seed in (1, 2, 3, 4) if seed != config["seed"]][:3]
    block = args.fg_block or config["cgmd"]["production"]
    kind = {name: config["models"][name]["kind"] if name in config["models"] else "refined" for name in names}
    if len(seeds) < 3 or len(set(seeds)) < len(seeds):
        parser.error(f"--cg-seeds needs at least 3 different seeds (the jackknife), got {seeds}")

    runs = {(name, t): resolve(config, results, name, t) for name in names for t in temperatures}
    missing = sorted({str(path) for _, *files in runs.values() for path in files if not path.exists()}
                     | {str(results / f"cg/T{temperature_label(t)}/beads.npz") for t in temperatures
                        if not (results / f"cg/T{temperature_label(t)}/beads.npz").exists()})
    if missing:
        parser.error("not in the results: " + ", ".join(missing))
    fg = {t: fg_blocks(results / f"cg/T{temperature_label(t)}/beads.npz", block, config["observables"]) for t in temperatures}
    work = OUT / "excess_error"
    shutil.rmtree(work, ignore_errors=True)  # a new start never reads an earlier one's trajectories
    work.mkdir(parents=True)

    tasks, simulated = [], set()
    for (_, t), (run, path, friction_file) in runs.items():
        if (run, t) in simulated:
            continue
        simulated.add((run, t))
        friction = cgmd.read_friction(friction_file, t)
        beads = results / f"cg/T{temperature_label(t)}/beads.npz"
        tasks += [((run, t), path, beads, friction, t, seed, config, work) for seed in seeds]
    print(f"{len(tasks)} CG runs of {len(simulated)} (model, T) at {len(temperatures)} temperatures", file=sys.stderr, flush=True)
    replicas = {}
    with Pool(args.jobs) as pool:
        for done, (key, seed, result) in enumerate(pool.imap_unordered(cg_replica, tasks), 1):
            replicas.setdefault(key, {})[seed] = result
            print(f"{done}/{len(tasks)}: {key[0]} at {key[1]:g} K, seed {seed}", file=sys.stderr, flush=True)

    run_rows = []
    for (name, t), (run, _, _) in runs.items():
        reference = results / f"observables/fg/T{temperature_label(t)}"
        rdf_fg, adf_fg = io.read_table(reference / "rdf_com.tsv"), io.read_table(reference / "adf.tsv")
        for seed in seeds:
            result = replicas[(run, t)][seed]
            eps = {"eps_g": np.nan, "eps_a": np.nan} if result is None else {
                "eps_g": transfer.rdf_error(result[0], result[1], rdf_fg["r_nm"], rdf_fg["g"]),
                "eps_a": transfer.adf_error(result[2], result[3], adf_fg["theta_deg"], adf_fg["p_per_deg"])}
            run_rows.append({"model": name, "T_K": t, "cg_run": run, "cg_seed": seed, "stable": result is not None, **eps})
    io.write_table(OUT / "excess_error_runs.tsv", pd.DataFrame(run_rows), comment=(
        f"one CG run per row, the model's (cg_run: the run that stands for it at T) with seed cg_seed;\n"
        f"eps_g (1), eps_a (1/deg) against the FG run of {results} at T_K (K), as in its transferability table"))

    fm_ref = next((n for n in names if kind[n] == "fm_ref"), None)
    oracle = next((n for n in names if kind[n] == "fm_oracle"), None)
    rows = []
    for (name, t), (run, _, _) in runs.items():
        row = {"model": name, "kind": kind[name], "T_K": t, "cg_run": run, "n_cg": len(seeds), "n_fg": len(fg[t][1])}
        references = {label: runs[(other, t)][0] for label, other in (("fm_ref", fm_ref), ("oracle", oracle)) if other}
        for metric in ("g", "a"):
            row.update(metric_columns(metric, stacked(replicas, run, t, seeds), fg[t],
                                      {label: stacked(replicas, other, t, seeds) if other != run else "same"
                                       for label, other in references.items()}))
        rows.append(row)
    table = pd.DataFrame(rows)
    order = ["model", "kind", "T_K", "cg_run", "n_cg", "n_fg"] + [
        f"eps_{m}{s}" for m in ("g", "a") for s in ("", "_noise", "_excess", "_excess_se", "_excess_ratio_fm_ref",
                                                    "_excess_ratio_fm_ref_se", "_excess_ratio_oracle", "_excess_ratio_oracle_se")]
    table = table[[c for c in order if c in table]]
    io.write_table(OUT / "excess_error.tsv", table, comment=(
        f"per model and T_K (K): the means of n_cg CG runs (seeds {seeds}) and of n_fg blocks of {block:g} ps of the FG run of {results};\n"
        "eps_g (1), eps_a (1/deg) between the means; _noise: the part of eps that their sampling noise makes; _excess: eps\n"
        "with that part taken out (thermocg.transfer.excess_error; negative: within the noise); _se: jackknife standard\n"
        "errors over CG seeds and FG blocks; _ratio_fm_ref, _ratio_oracle: the excess over that of fm_ref's or fm_oracle's\n"
        "runs at T_K (paired FG blocks; 1 with SE 0 where the run is the same)"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
