"""The training-seed spread: fm_ref retrained with other seeds, the T0-only thermal models refitted on it, eps far from T0.

Needs a finished default run. The config's own seed stands for the run's models (results/models).
For each other seed of ``--training-seeds``, fm_ref is trained again on the run's T0 frames with the
same recipe, and each entry of ``--models`` whose kind is fitted on fm_ref's W0 (em, trf1, trf2) is
refitted on it by the pipeline's closed form. Every model then runs CG MD at ``--temperatures`` for
each of ``--cg-seeds`` as the pipeline's cgmd does (with the run's friction for that entry): eps_g,
eps_a against the FG run, and each model's ratio to fm_ref of the same training seed (means over the
CG seeds). The transferability table's spread is over halves of one CG run; this is the spread a
different training seed adds.

    python benchmarks/bench_training_seed.py [--results results] [--config config/config.yaml]
        [--training-seeds 7] [--models fm_ref trf1] [--temperatures 450 550 700] [--cg-seeds 2026 1]

Writes benchmarks/results/training_seed.tsv (one row per run) and prints the means and ratios.
"""

import argparse
import copy
import tempfile
from pathlib import Path

import pandas as pd
from bench_data_efficiency import far_temperatures
from bench_response_capacity import cg_errors

from thermocg import config as configuration
from thermocg import io, kinds, train
from thermocg.config import model_spec_with_defaults, temperature_label


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--training-seeds", type=int, nargs="+", default=[7], help="seeds other than the config's")
    parser.add_argument("--models", nargs="+", default=["fm_ref", "trf1"], help="fm_ref and entries of kind em, trf1 or trf2")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K; default: the config's 150 K or more from T0")
    parser.add_argument("--cg-seeds", type=int, nargs="+", default=[2026, 1])
    args = parser.parse_args()
    config = configuration.load(args.config)
    fm_ref = next((name for name, spec in config["models"].items() if spec["kind"] == "fm_ref"), None)
    wrong = [name for name in args.models
             if name not in config["models"] or (name != fm_ref and config["models"][name]["kind"] not in kinds.SHARED_W0)]
    if fm_ref not in args.models or wrong:
        parser.error(f"--models must hold the fm_ref entry ({fm_ref}) and entries of kind {', '.join(sorted(kinds.SHARED_W0))} "
                     f"of {args.config}; not usable: {wrong}")
    reference = float(config["reference_temperature"])
    temperatures = args.temperatures or far_temperatures(config)
    results = Path(args.results)
    label = temperature_label(reference)
    beads = {label: str(results / f"cg/T{label}/beads.npz")}
    energies = {label: str(results / f"cg/T{label}/molecule_energies.npz")}

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = {config["seed"]: {name: results / f"models/{name}/model.pt" for name in args.models}}
        for seed in args.training_seeds:
            seeded = copy.deepcopy(config)
            seeded["seed"] = seed
            out = Path(folder) / f"seed{seed}"
            out.mkdir()
            files[seed] = {}
            for name in [fm_ref] + [m for m in args.models if m != fm_ref]:  # fm_ref first: the others share its W0
                spec = model_spec_with_defaults(config["models"][name])
                path = out / f"{name}.pt"
                train.train_model(name, spec, seeded, beads, energies, path, out / f"{name}.tsv", out / f"{name}.ckpt",
                                  w0_model=None if name == fm_ref else files[seed][fm_ref])
                files[seed][name] = path
        for seed, models in files.items():
            for name, path in models.items():
                for temperature in temperatures:
                    for cg_seed in args.cg_seeds:
                        errors = cg_errors(config, results, path, name, temperature, cg_seed,
                                           Path(folder) / f"{name}_seed{seed}_T{temperature_label(temperature)}_cg{cg_seed}")
                        rows.append({"training_seed": seed, "model": name, "T_K": temperature, "cg_seed": cg_seed, **errors})
                        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(out / "training_seed.tsv", table, comment=(
        f"models of {results} (training_seed {config['seed']}, the config's) and retrained with other seeds on the same T0 frames; "
        "CG MD as the pipeline's cgmd; eps_g, eps_a (1/deg) against the FG run at T"))
    means = table.groupby(["training_seed", "model", "T_K"], sort=False)[["eps_g", "eps_a"]].mean()
    baseline = means.xs(fm_ref, level="model")
    ratios = means.div(baseline.reindex(means.index.droplevel("model")).to_numpy()).add_suffix("_ratio_fm_ref")
    print(pd.concat([means, ratios], axis=1).to_string())


if __name__ == "__main__":
    main()
