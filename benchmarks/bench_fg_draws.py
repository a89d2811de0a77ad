"""Replicas of the whole experiment: the default run with other seeds, and issue 12's ratios over them.

One run of the default config is one draw of everything random in it: the FG trajectories, the
training and the CG MD all follow the config's `seed`. The acceptance of issue 12 is read off one
such draw, and between draws trf2's eps_a ratio to fm_ref moves by about as much as its distance to
the 0.5 asked (README.md, "Over six draws of the whole experiment"). This runs the default with other
seeds and gives each ratio's mean over the draws with its standard error across them.

    python benchmarks/bench_fg_draws.py --seeds 1 2 [--work benchmarks/results/fg_draws] [--cores 2]
        [--models fm_ref fm_oracle trf1 trf2 trf2_diffsim] [--with-dynamics]
        [--draw LABEL=RESULTS_DIR,EXCESS_TSV ...]

Per seed S, in <work>/seed<S>/repo: a clone of this repository's HEAD (commit the changes you want
measured: the clone has HEAD only, and runs its own package code) with the config's seed set to S
and, unless --with-dynamics, no dynamics comparison (no eps depends on it); `snakemake --cores N`
there, then `benchmarks/bench_excess_error.py --models ...` there with CG seeds S and three others.
Both resume: Snakemake redoes only what is missing, and a draw whose excess table is newer than its
transferability table and has every --models is read, not rerun. A work clone of another commit is
reused only where that commit and HEAD differ in nothing the numbers depend on (RESULT_PATHS).
--draw adds a draw made elsewhere: a finished run's results directory and the excess_error.tsv that
bench_excess_error.py wrote for it.

Writes benchmarks/results/fg_draws.tsv (per draw, model and T: the excess, its ratios to fm_ref and
fm_oracle with their jackknife SEs, and the run's FG floor) and fg_draws_summary.tsv (per model and
T: the mean of each ratio over the draws, the standard deviation between draws and the standard error
of the mean, sd / sqrt(n)); prints the second.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from thermocg import io

ROOT = Path(__file__).resolve().parents[1]
#: where the tables go (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")
#: what a draw's numbers depend on: a work clone of an older commit that differs from HEAD only elsewhere is reused
RESULT_PATHS = ["src", "workflow", "Snakefile", "config", "pyproject.toml", "benchmarks/bench_excess_error.py",
                "benchmarks/bench_prior.py"]
#: the columns of bench_excess_error.py's table kept per draw
EXCESS_COLUMNS = [f"eps_{m}_{s}" for m in ("g", "a") for s in (
    "excess", "excess_se", "excess_ratio_fm_ref", "excess_ratio_fm_ref_se", "excess_ratio_oracle", "excess_ratio_oracle_se")]


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def draw_config(seed, with_dynamics):
    """The default config (config/config.yaml) with ``seed``, and no dynamics comparison unless asked."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["seed"] = int(seed)
    if not with_dynamics:
        config["dynamics"]["models"] = []
    return config


def prepare(directory, seed, with_dynamics):
    """A clone of HEAD in ``directory`` with the draw's config; returns the clone."""
    repo = directory / "repo"
    head = git("rev-parse", "HEAD")
    if repo.exists():
        made_from = git("rev-parse", "HEAD", cwd=repo)
        changed = git("diff", "--name-only", made_from, head, "--", *RESULT_PATHS) if made_from != head else ""
        if changed:
            sys.exit(f"{repo} was cloned from {made_from[:9]}, and HEAD changes what its results depend on "
                     f"({changed.split()[0]}, ...): remove it or use another --work")
    else:
        if git("status", "--porcelain", "--untracked-files=no"):
            print("warning: uncommitted changes are not in the draws (a clone of HEAD runs)", file=sys.stderr)
        directory.mkdir(parents=True, exist_ok=True)
        git("clone", "--quiet", str(ROOT), str(repo))
    config = yaml.safe_dump(draw_config(seed, with_dynamics), sort_keys=False)
    path = repo / "config/config.yaml"
    if path.read_text() != config:  # rewritten only when it changes: Snakemake reruns what a config change touches
        path.write_text(config)
    return repo


def run_draw(seed, work, cores, models, with_dynamics):
    """The default run and its excess table for one seed; returns (results directory, excess table path)."""
    directory = work / f"seed{seed}"
    repo = prepare(directory, seed, with_dynamics)
    # the clone's own package code, not the one installed from this repository
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")])))
    table = directory / "excess_error.tsv"
    transferability = repo / "results/metrics/transferability.tsv"
    print(f"seed {seed}: snakemake --cores {cores} in {repo} (log: {directory / 'snakemake.log'})", file=sys.stderr, flush=True)
    with open(directory / "snakemake.log", "a") as log:
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores)], cwd=repo, env=env,
                       stdout=log, stderr=subprocess.STDOUT, check=True)
    if (table.exists() and table.stat().st_mtime > transferability.stat().st_mtime
            and set(models) <= set(io.read_table(table)["model"])):
        print(f"seed {seed}: reading {table}", file=sys.stderr, flush=True)
    else:
        print(f"seed {seed}: bench_excess_error.py (log: {directory / 'excess_error.log'})", file=sys.stderr, flush=True)
        with open(directory / "excess_error.log", "w") as log:
            subprocess.run([sys.executable, "benchmarks/bench_excess_error.py", "--models", *models, "--jobs", str(cores)],
                           cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        table.write_bytes((repo / "benchmarks/results/excess_error.tsv").read_bytes())
    return repo / "results", table


def draw_rows(label, results, excess_table):
    """One row per model and T of a draw: its excess columns and the run's FG floor at T."""
    excess = io.read_table(excess_table)
    floors = io.read_table(Path(results) / "metrics/transferability.tsv")
    floors = floors.groupby("T_K")[["eps_g_floor", "eps_a_floor"]].first()
    rows = excess[["model", "T_K", *EXCESS_COLUMNS]].copy()
    rows.insert(0, "draw", label)
    return rows.join(floors, on="T_K")


def summarise(draws):
    """Per model and T: each ratio's mean over the draws, the sd between them and the SE of the mean."""
    rows = []
    for (model, temperature), group in draws.groupby(["model", "T_K"], sort=False):
        row = {"model": model, "T_K": temperature, "n_draws": len(group)}
        for column in ("eps_g_excess", "eps_a_excess", "eps_g_excess_ratio_fm_ref", "eps_a_excess_ratio_fm_ref",
                       "eps_g_excess_ratio_oracle", "eps_a_excess_ratio_oracle"):
            values = group[column].to_numpy(float)
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
            row.update({column: float(np.mean(values)), f"{column}_sd": sd, f"{column}_se": sd / np.sqrt(len(values))})
        rows.append(row)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="config seeds to run the default with")
    parser.add_argument("--work", type=Path, default=OUT / "fg_draws", help="one directory per seed goes here")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["fm_ref", "fm_oracle", "trf1", "trf2", "trf2_diffsim"])
    parser.add_argument("--with-dynamics", action="store_true", help="keep the config's dynamics comparison")
    parser.add_argument("--draw", action="append", default=[], metavar="LABEL=RESULTS_DIR,EXCESS_TSV",
                        help="a draw made elsewhere (repeat for several)")
    args = parser.parse_args()
    if "fm_ref" not in args.models:
        parser.error("--models needs fm_ref: the ratios are to it")
    if len(set(args.seeds)) < len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    labels = [spec.partition("=")[0] for spec in args.draw] + [f"seed {seed}" for seed in args.seeds]
    if len(set(labels)) < len(labels):
        parser.error(f"two draws have the same label: {labels}")
    draws = []
    for spec in args.draw:
        label, _, paths = spec.partition("=")
        results, _, excess_table = paths.partition(",")
        if not (label and Path(results, "metrics/transferability.tsv").exists() and Path(excess_table).is_file()):
            parser.error(f"--draw {spec!r}: need LABEL=RESULTS_DIR,EXCESS_TSV of a finished run and its excess table")
        draws.append(draw_rows(label, results, excess_table))
    for seed in args.seeds:
        draws.append(draw_rows(f"seed {seed}", *run_draw(seed, args.work.resolve(), args.cores, args.models, args.with_dynamics)))
    if len(draws) < 2:
        parser.error("give at least two draws (--seeds, --draw)")
    draws = pd.concat(draws, ignore_index=True)
    summary = summarise(draws)
    io.write_table(OUT / "fg_draws.tsv", draws, comment=(
        "per draw (a run of the default config with its seed, or --draw), model and T_K (K): bench_excess_error.py's\n"
        "excess eps_g (1) and eps_a (1/deg), their ratios to fm_ref's and fm_oracle's and jackknife SEs over CG seeds\n"
        "and FG blocks; eps_*_floor: the draw's FG noise floor at T_K, from its transferability table"))
    io.write_table(OUT / "fg_draws_summary.tsv", summary, comment=(
        f"per model and T_K (K), over the {draws['draw'].nunique()} draws of fg_draws.tsv: the mean of each column, _sd the\n"
        "standard deviation between draws, _se = sd / sqrt(n_draws)"))
    shown = summary[["model", "T_K", "n_draws"]].copy()
    for column in ("eps_g_excess_ratio_fm_ref", "eps_a_excess_ratio_fm_ref"):
        shown[column] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(summary[column], summary[f"{column}_se"])]
    print(shown.to_string(index=False))


if __name__ == "__main__":
    main()
